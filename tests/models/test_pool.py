"""The image pool of CycleGAN's discriminators (Shrivastava et al. 2017): its inputs while it
fills, a swap half the time once full, seeded, resumable from its state dict, detached copies."""

from __future__ import annotations

import pytest
import torch

from monet.errors import ConfigError
from monet.models.pool import ImagePool


def ids(n: int, start: int = 0) -> torch.Tensor:
    """n images (n, 1, 2, 2), image k filled with the value start + k: its identity."""
    return torch.arange(start, start + n, dtype=torch.float32)[:, None, None, None].expand(
        n, 1, 2, 2
    )


def labels(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0]]


def pooled(pool: ImagePool) -> list[int]:
    return sorted(labels(pool.state_dict()["images"]))


def test_pool_of_size_0_returns_its_input():
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = ImagePool(0).query(x)
    assert torch.equal(out, x) and not out.requires_grad
    assert ImagePool(0).state_dict()["count"] == 0


def test_pool_returns_its_inputs_while_filling():
    pool, g = ImagePool(5), torch.Generator().manual_seed(0)
    assert labels(pool.query(ids(3), g)) == [0, 1, 2]
    assert labels(pool.query(ids(2, 3), g)) == [3, 4]
    assert pooled(pool) == [0, 1, 2, 3, 4]
    assert pool.count == 5


def test_pool_swaps_half_the_time_once_full():
    pool, g = ImagePool(4), torch.Generator().manual_seed(1)
    pool.query(ids(4), g)
    new = old = 0
    for k in range(4, 204):
        before = pooled(pool)
        (r,) = labels(pool.query(ids(1, k), g))
        if r == k:
            new += 1
            assert pooled(pool) == before
        else:
            old += 1
            assert r in before
            assert pooled(pool) == sorted([*(v for v in before if v != r), k])
    assert 70 < new < 130 and 70 < old < 130  # 200 fair coins: both outcomes, about half


def test_pool_batch_answers_are_new_or_stored():
    pool, g = ImagePool(6), torch.Generator().manual_seed(2)
    pool.query(ids(6), g)
    seen = set(range(6))
    for step in range(10):
        batch = ids(4, 6 + 4 * step)
        out = labels(pool.query(batch, g))
        for r, k in zip(out, labels(batch)):
            assert r == k or r in seen  # an earlier image of the same batch may come back
            seen.add(k)
        assert len(set(out)) == len(out)  # an image is never handed out twice in one batch


def test_pool_is_deterministic_given_the_seed():
    def run(seed: int) -> list[list[int]]:
        pool, g = ImagePool(3), torch.Generator().manual_seed(seed)
        return [labels(pool.query(ids(2, 2 * k), g)) for k in range(20)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_pool_state_dict_round_trip_resumes_exactly():
    pool, g = ImagePool(5), torch.Generator().manual_seed(3)
    for k in range(6):
        pool.query(ids(2, 2 * k), g)
    state, rng = pool.state_dict(), g.get_state()
    assert state["count"] == 5 and state["images"].shape == (5, 1, 2, 2)
    resumed, g2 = ImagePool(5), torch.Generator()
    resumed.load_state_dict(state)
    g2.set_state(rng)
    for k in range(6, 20):
        assert torch.equal(pool.query(ids(2, 2 * k), g), resumed.query(ids(2, 2 * k), g2))
    assert pooled(pool) == pooled(resumed)


def test_pool_state_dict_is_a_copy_and_partial_pools_round_trip():
    pool = ImagePool(5)
    pool.query(ids(2))
    state = pool.state_dict()
    pool.query(ids(3, 2))
    assert labels(state["images"]) == [0, 1]
    resumed = ImagePool(5)
    resumed.load_state_dict(state)
    assert labels(resumed.query(ids(3, 10))) == [10, 11, 12]  # still filling: 2 + 3 = 5
    assert pooled(resumed) == [0, 1, 10, 11, 12]
    with pytest.raises(ConfigError, match="size=1.*size >= 2"):
        ImagePool(1).load_state_dict(state)


def test_pool_answers_are_detached_copies():
    pool = ImagePool(2)
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = pool.query(x * 1)
    assert not out.requires_grad
    assert torch.equal(out[:2], x[:2].detach())
    y = torch.randn(2, 3, 4, 4)
    pool = ImagePool(2)
    out = pool.query(y)
    y.zero_()
    assert out.abs().sum() > 0  # neither the answer nor the stored images alias the input
    assert pool.state_dict()["images"].abs().sum() > 0


def test_pool_starts_over_when_the_image_shape_changes():
    pool = ImagePool(2)
    pool.query(ids(2))
    out = pool.query(torch.ones(1, 3, 4, 4))
    assert torch.equal(out, torch.ones(1, 3, 4, 4))
    assert pool.count == 1 and pool.state_dict()["images"].shape == (1, 3, 4, 4)


def test_pool_bad_size():
    with pytest.raises(ConfigError, match="size=-1"):
        ImagePool(-1)
