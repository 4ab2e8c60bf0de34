"""Every seed of the project, in one scheme: a random stream is named by integers.

`stream_seed(seed, epoch, step, rank, ...)` turns the name into a seed and `generator(...)` into
a seeded torch.Generator, so a stream is the same in every process, on every device count and
after a resume; `tensor_seed` names a stream by a tensor's contents (a diffusion sample's
per-image noise). The global streams (torch, Python, NumPy) are offset per rank at fit start
and captured and restored with checkpoints. Imports torch, NumPy and the standard library only.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def stream_seed(*parts: int) -> int:
    """A seed for one random stream named by integers (seed, epoch, step, rank, image...)."""
    return hash(parts) & (2**62 - 1)  # ints hash the same in every process


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator seeded for the stream `parts` names (see `stream_seed`)."""
    return torch.Generator(device=device).manual_seed(stream_seed(*parts))


def tensor_seed(x: torch.Tensor) -> int:
    """The seed of the stream a tensor's contents name: the same x always seeds the same one."""
    return stream_seed(zlib.crc32(x.detach().cpu().float().contiguous().numpy().tobytes()))


def offset_by_rank(rank: int) -> None:
    """Give this rank its own global streams (torch, Python, NumPy), drawn from the seed the
    run started with: `seed_everything` gives every rank the same one, so every rank would
    otherwise draw the same noise."""
    seed = stream_seed(torch.initial_seed(), rank)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_state() -> dict[str, Any]:
    """Every global random stream training draws from: noise, timesteps, dropout, DiffAugment."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain types and tensors only: Lightning loads checkpoints with weights_only=True
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """One state per rank (each rank draws its own noise), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return [rng_state()]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, rng_state())
    return states


def restore_rank_state(states: list[dict[str, Any]] | None) -> None:
    """This rank's state of `gather_rng_states`, or rank 0's when the run had fewer ranks."""
    if states:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        set_rng_state(states[rank if rank < len(states) else 0])
