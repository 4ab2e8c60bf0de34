"""monet.runtime.seeding: stream seeds stable across processes and different for each rank, each
rank's own global streams, RNG states that round-trip, seeds that follow tensor contents."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from support import ROOT

from monet.runtime import seeding


def test_stream_seeds_are_stable_across_processes_and_differ_by_rank():
    code = "from monet.runtime.seeding import stream_seed; "
    code += "print(stream_seed(0, 1, 2), stream_seed(7))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [str(seeding.stream_seed(0, 1, 2)), str(seeding.stream_seed(7))]
    seeds = {seeding.stream_seed(5, step, rank) for step in range(50) for rank in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**62 for s in seeds)
    g = seeding.generator(5, 0)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=seeding.generator(5, 0)))
    assert not torch.equal(
        torch.rand(3, generator=seeding.generator(5, 1)), torch.rand(3, generator=g)
    )


def test_each_rank_gets_its_own_global_streams_from_the_same_start():
    state = seeding.rng_state()
    try:
        draws = []
        for rank in (0, 1, 1):
            torch.manual_seed(42)  # what seed_everything gives every rank
            seeding.offset_by_rank(rank)
            draws.append(torch.rand(4))
        assert not torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])
    finally:
        seeding.set_rng_state(state)


def test_rng_states_round_trip():
    saved = seeding.gather_rng_states()
    first = torch.rand(3)
    seeding.restore_rank_state(saved)
    assert torch.equal(torch.rand(3), first)
    seeding.restore_rank_state(None)  # a checkpoint without states changes nothing


def test_tensor_seed_follows_the_contents():
    x = torch.randn(3, 8, 8)
    assert seeding.tensor_seed(x) == seeding.tensor_seed(x.clone())
    assert seeding.tensor_seed(x) != seeding.tensor_seed(x + 1)
