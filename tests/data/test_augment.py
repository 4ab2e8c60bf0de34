"""Each augmentation on its own, five-crop, resizing, and seeded reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from monet.data.augment import (
    Augment,
    Erasing,
    FiveCrop,
    ResizedCrop,
    Rotation,
    affine_grid,
    affine_theta,
    augment_batch_,
    preprocess,
    resize_square,
)


def batch(n=6, size=16, seed=0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nothing_on_is_identity():
    x = batch()
    assert torch.equal(augment_batch_(x.clone(), Augment(), gen()), x)


def test_hflip_all_and_none():
    x = batch()
    assert torch.equal(augment_batch_(x.clone(), Augment(hflip=1.0), gen()), x.flip(-1))
    assert torch.equal(augment_batch_(x.clone(), Augment(hflip=0.0), gen()), x)


def test_hflip_half_flips_some_images_whole():
    x = batch(n=64)
    y = augment_batch_(x.clone(), Augment(hflip=0.5), gen())
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(y, x)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(y, x)])
    assert (flipped | kept).all() and 16 < flipped.sum() < 48


def warp(x: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    grid = F.affine_grid(torch.from_numpy(theta).to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def params(n, angle=0.0, flip=False, s=1.0, cx=0.0, cy=0.0):
    full = lambda v: np.full(n, float(v))  # noqa: E731
    return full(angle), np.full(n, flip), full(s), full(s), full(cx), full(cy)


def test_affine_map_identity_flip_and_quarter_turn():
    x = batch(n=4, size=8)
    assert torch.allclose(warp(x, affine_theta(*params(4))), x, atol=1e-6)
    assert torch.allclose(warp(x, affine_theta(*params(4, flip=True))), x.flip(-1), atol=1e-6)
    quarter = warp(x, affine_theta(*params(4, angle=math.pi / 2)))
    assert torch.allclose(quarter, torch.rot90(x, 1, (-2, -1)), atol=1e-5)


def test_affine_map_crop_is_a_zoom_into_the_chosen_region():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 8:, 8:] = 1.0  # bottom-right quadrant lit
    zoom = warp(x, affine_theta(*params(1, s=0.5, cx=0.5, cy=0.5)))[..., 1:-1, 1:-1]
    assert torch.allclose(zoom, torch.ones_like(zoom), atol=1e-6)  # (the rim blends)
    other = warp(x, affine_theta(*params(1, s=0.5, cx=-0.5, cy=-0.5)))[..., 1:-1, 1:-1]
    assert torch.allclose(other, torch.zeros_like(other), atol=1e-6)


def test_rotation_zero_degrees_is_identity():
    x = batch()
    y = augment_batch_(x.clone(), Augment(rotation=Rotation(p=1.0, degrees=0.0)), gen())
    assert torch.allclose(y, x, atol=1e-5)


def test_rotation_keeps_the_centre_and_fills_corners_by_reflection():
    x = torch.zeros(8, 3, 33, 33)
    x[:, :, 16, 16] = 1.0
    y = augment_batch_(x.clone(), Augment(rotation=Rotation(p=1.0, degrees=45.0)), gen())
    assert torch.allclose(y[:, :, 16, 16], torch.ones(8, 3), atol=1e-5)
    z = augment_batch_(
        batch(8, 33) * 0 + 0.5, Augment(rotation=Rotation(p=1.0, degrees=45.0)), gen()
    )
    assert torch.allclose(z, torch.full_like(z, 0.5), atol=1e-5)  # no black corners


def test_rotation_p_zero_and_partial():
    x = batch(n=32)
    y = augment_batch_(x.clone(), Augment(rotation=Rotation(p=0.5, degrees=30.0)), gen())
    same = torch.tensor([torch.allclose(a, b, atol=1e-5) for a, b in zip(y, x)])
    assert 4 < same.sum() < 28


def test_erasing_fills_one_box_per_image():
    x = batch(n=16, size=32)
    cfg = Augment(erasing=Erasing(p=1.0, scale=(0.1, 0.2), value=-5.0))
    y = augment_batch_(x.clone(), cfg, gen())
    erased = y == -5.0
    assert (erased.any(dim=(1, 2, 3))).all()
    for e in erased[:, 0]:
        rows, cols = e.any(1).nonzero().flatten(), e.any(0).nonzero().flatten()
        box = e[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a solid rectangle
        assert 0.05 * 32 * 32 <= box.numel() <= 0.3 * 32 * 32
    assert torch.equal(y[~erased], x[~erased])  # nothing else changed
    assert (erased[:, 0] == erased[:, 1]).all()  # same box in every channel


def test_resized_crop_full_scale_is_identity_and_smaller_scales_zoom():
    x = batch()
    full = Augment(resized_crop=ResizedCrop(p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0)))
    assert torch.allclose(augment_batch_(x.clone(), full, gen()), x, atol=1e-5)
    # a smooth ramp: zooming into a quarter of the area halves the range the output spans
    ramp = torch.linspace(-1, 1, 32).expand(8, 3, 32, 32).contiguous()
    quarter = Augment(resized_crop=ResizedCrop(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0)))
    y = augment_batch_(ramp.clone(), quarter, gen())
    spans = y[:, 0, 16].amax(-1) - y[:, 0, 16].amin(-1)
    assert torch.allclose(spans, torch.full_like(spans, spans[0].item()), atol=1e-4)
    assert 0.9 < spans[0] < 1.1  # half of the full span of 2 (less one pixel step)
    starts = y[:, 0, 16, 0]
    assert starts.unique().numel() > 1  # each image gets its own crop position


def test_seeded_and_reproducible_and_device_independent_params():
    cfg = Augment(
        hflip=0.5, rotation=Rotation(p=0.5), erasing=Erasing(p=0.5), resized_crop=ResizedCrop(p=0.5)
    )
    x = batch(n=16)
    a, b = augment_batch_(x.clone(), cfg, gen(7)), augment_batch_(x.clone(), cfg, gen(7))
    c = augment_batch_(x.clone(), cfg, gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resize_square_converts_size_and_aspect():
    image = torch.randint(0, 256, (3, 300, 200), dtype=torch.uint8)
    out = resize_square(image, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    square = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    assert torch.equal(resize_square(square, 64), square)


def test_five_crop_expands_six_fold_with_the_right_crops():
    image = torch.arange(16, dtype=torch.uint8).repeat_interleave(16).reshape(1, 16, 16)
    image = torch.stack([image[0], image[0].T, image[0]])  # rows in channel 0, cols in 1
    views = preprocess(image, 8, FiveCrop(enabled=True, scale=0.5))
    assert len(views) == 6 and all(v.shape == (3, 8, 8) for v in views)
    assert torch.equal(views[1], image[:, :8, :8])  # top-left corner, already 8 px
    assert torch.equal(views[4], image[:, 8:, 8:])  # bottom-right
    assert torch.equal(views[5], image[:, 4:12, 4:12])  # centre
    assert len(preprocess(image, 8, FiveCrop(enabled=False))) == 1


@pytest.mark.parametrize("size", [64, 256])
def test_augment_runs_at_training_sizes(size):
    cfg = Augment(hflip=0.5, rotation=Rotation(p=1.0), erasing=Erasing(p=0.5))
    assert augment_batch_(batch(4, size), cfg, gen()).shape == (4, 3, size, size)


def test_separable_grid_matches_torch_affine_grid():
    theta = torch.randn(5, 2, 3)
    want = F.affine_grid(theta, [5, 3, 12, 20], align_corners=False)
    assert torch.allclose(affine_grid(theta, 12, 20), want, atol=1e-6)
