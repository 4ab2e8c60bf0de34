"""monet.runtime.compat: one test per private interface the package uses. Each fails when the
library changes what the adapter relies on (a name gone, a meaning changed, or a workaround no
longer needed), so a version bump shows at once which adapter to rewrite."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from monet.runtime import compat


def test_torch_still_has_the_cpu_bf16_checks():
    # torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported: gone, compat says "yes"
    # on every CPU, and bf16-mixed would be emulated there without the warning
    assert isinstance(torch.cpu._is_avx512_bf16_supported(), bool)
    assert isinstance(torch.cpu._is_amx_tile_supported(), bool)
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert compat.cpu_bf16_units() is expected


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=0.1, fused=True),
        lambda p: torch.optim.AdamW(p, lr=0.1, fused=True),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, fused=True),
    ],
    ids=["Adam", "AdamW", "SGD"],
)
def test_a_fused_optimizer_skips_the_step_it_is_told_to_skip_and_only_that(make):
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = make([weight])
    optimizer.register_step_post_hook(compat.forget_skip)
    weight.grad = torch.full((4,), 0.5)
    optimizer.step()  # a normal step: the weights move and the state is made
    after_one = weight.detach().clone()
    state = {k: v.clone() for k, v in optimizer.state[weight].items() if torch.is_tensor(v)}
    assert not torch.equal(after_one, torch.ones(4))

    compat.skip_step_if(optimizer, torch.tensor(1.0))
    optimizer.step()  # skipped on the device: weights, moments and step count as they were
    assert torch.equal(weight.detach(), after_one)
    for key, value in state.items():
        assert torch.equal(optimizer.state[weight][key], value), key
    assert "found_inf" not in vars(optimizer)  # the post-hook took the flag away

    optimizer.step()  # no flag: the next step updates again
    assert not torch.equal(weight.detach(), after_one)

    compat.skip_step_if(optimizer, torch.tensor(0.0))
    before = weight.detach().clone()
    optimizer.step()  # told not to skip
    assert not torch.equal(weight.detach(), before)


def test_lightning_still_passes_wandb_the_anonymous_argument_compat_drops(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    # When this fails Lightning no longer passes `anonymous` (or keeps its arguments elsewhere):
    # drop `drop_wandb_anonymous` and its call in monet/runtime/loggers.py.
    assert "anonymous" in logger._wandb_init and logger._wandb_init["anonymous"] is None
    compat.drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init
    assert logger._wandb_init["project"] == "p"  # the rest stays


def test_a_dispatch_mode_sees_every_read_back_to_the_host():
    class Reads(compat.TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func is compat.LOCAL_SCALAR_DENSE
            return func(*args, **(kwargs or {}))

    x = torch.arange(4.0)
    with Reads() as mode:
        y = (x * 2).sum()  # stays a tensor: no read
        assert mode.count == 0
        y.item(), float(y), bool(y > 0)
    assert mode.count == 3
