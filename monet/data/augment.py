"""Augmentations: a one-time preprocessing step (resize, five-crop) and batched random ops.

The random ops act on a whole float batch in [-1, 1] at once, on whatever device the batch is
on. Their random parameters are drawn on the CPU from a seeded generator, so a seed gives the
same augmentations on a CPU and on a GPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass
class Rotation:
    p: float = 0.0  # share of images rotated
    degrees: float = 15.0  # angle drawn uniformly from [-degrees, degrees]
    padding: Literal["zeros", "border", "reflection"] = "reflection"


@dataclass
class Erasing:
    p: float = 0.0
    scale: tuple[float, float] = (0.02, 0.33)  # erased share of the area
    ratio: tuple[float, float] = (0.3, 3.3)  # aspect ratio of the erased box
    value: float = 0.0  # fill, in the [-1, 1] image range


@dataclass
class ResizedCrop:
    p: float = 0.0
    scale: tuple[float, float] = (0.5, 1.0)  # share of the area kept
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass
class FiveCrop:
    """The report's expansion: each image plus its four corner and centre crops (300 -> 1,800)."""

    enabled: bool = False
    scale: float = 0.75  # crop side as a share of the image side


@dataclass
class Augment:
    """Every augmentation, each off by default; set a probability above 0 to switch one on."""

    hflip: float = 0.0  # probability of a horizontal flip
    rotation: Rotation = field(default_factory=Rotation)
    erasing: Erasing = field(default_factory=Erasing)
    resized_crop: ResizedCrop = field(default_factory=ResizedCrop)
    five_crop: FiveCrop = field(default_factory=FiveCrop)


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop a uint8 (3, H, W) image to a square and resize it (antialiased) to `size`."""
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[:, top : top + side, left : left + side]
    if side == size:
        return image.contiguous()
    # uint8 in, uint8 out: torch's antialiased uint8 kernel is faster than a float round trip
    image = image.contiguous()
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)[0]


def five_crops(image: torch.Tensor, scale: float) -> list[torch.Tensor]:
    """The four corner crops and the centre crop, each `scale` of the side (torchvision order)."""
    _, h, w = image.shape
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
    return [image[:, y : y + ch, x : x + cw] for y, x in corners]


def preprocess(image: torch.Tensor, size: int, five_crop: FiveCrop) -> list[torch.Tensor]:
    """The once-per-image work done when the cache is built."""
    views = [image] + (five_crops(image, five_crop.scale) if five_crop.enabled else [])
    return [resize_square(v, size) for v in views]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (high - low) + low


def _chosen(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def augment_batch_(x: torch.Tensor, cfg: Augment, gen: torch.Generator) -> torch.Tensor:
    """Apply the random augmentations of `cfg` to a float batch (B, C, H, W) in [-1, 1].

    Works in place where it can (hence the underscore): `x` may be changed.
    """
    n, _, h, w = x.shape
    flip = _chosen(n, cfg.hflip, gen)
    rotate = _chosen(n, cfg.rotation.p, gen)
    crop = _chosen(n, cfg.resized_crop.p, gen)
    if rotate.any() or crop.any():
        # Flip, rotation and crop fold into one affine map per image: one grid_sample in all.
        theta = _affine(n, flip, rotate, crop, cfg, gen).to(x.device, x.dtype)
        grid = torch.matmul(_base_grid(h, w, x.device, x.dtype), theta.transpose(1, 2))
        x = F.grid_sample(
            x,
            grid.view(n, h, w, 2),
            mode="bilinear",
            padding_mode=cfg.rotation.padding,
            align_corners=False,
        )
    elif flip.any():
        chosen = flip.nonzero().flatten().to(x.device)
        x[chosen] = x[chosen].flip(-1)  # in place, only the chosen images
    erase = _chosen(n, cfg.erasing.p, gen)
    if erase.any():
        mask = _erase_mask(h, w, erase, cfg.erasing, gen, x.device)
        x.masked_fill_(mask[:, None], cfg.erasing.value)
    return x


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, H*W, 3) pixel centres (x, y, 1) in [-1, 1], the input of every affine map.

    Cached: `F.affine_grid` rebuilds it each call and costs 2x this matmul on a CPU.
    """
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    grid = torch.stack(
        [xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=device, dtype=dtype)],
        dim=-1,
    )
    return grid.view(1, h * w, 3)


def _affine(
    n: int,
    flip: torch.Tensor,
    rotate: torch.Tensor,
    crop: torch.Tensor,
    cfg: Augment,
    gen: torch.Generator,
) -> torch.Tensor:
    """Draw each image's rotation and crop (identity where not chosen) and build its map."""
    angle = torch.deg2rad(_uniform(n, -cfg.rotation.degrees, cfg.rotation.degrees, gen)) * rotate
    area = _uniform(n, *cfg.resized_crop.scale, gen)
    aspect = torch.exp(_uniform(n, *map(math.log, cfg.resized_crop.ratio), gen))
    sx = torch.where(crop, torch.sqrt(area * aspect).clamp(max=1.0), 1.0)
    sy = torch.where(crop, torch.sqrt(area / aspect).clamp(max=1.0), 1.0)
    cx = _uniform(n, -1, 1, gen) * (1 - sx) * crop
    cy = _uniform(n, -1, 1, gen) * (1 - sy) * crop
    return affine_theta(angle, flip, sx, sy, cx, cy)


def affine_theta(
    angle: torch.Tensor,
    flip: torch.Tensor,
    sx: torch.Tensor,
    sy: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
) -> torch.Tensor:
    """(B, 2, 3) maps from output to input coordinates in [-1, 1], as `F.affine_grid` takes.

    Flip, then rotate by `angle` (radians) about the centre, then take the crop of relative
    size (sx, sy) centred at (cx, cy): input = crop(rotate(flip(output))).
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    fx = 1.0 - 2.0 * flip.double()  # -1 mirrors the x axis
    row_x = torch.stack([sx * cos * fx, -sx * sin, cx], dim=1)
    row_y = torch.stack([sy * sin * fx, sy * cos, cy], dim=1)
    return torch.stack([row_x, row_y], dim=1)  # (B, 2, 3)


def _erase_mask(
    h: int, w: int, erase: torch.Tensor, cfg: Erasing, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(B, H, W) bool on `device`: one box per chosen image, sized as torchvision draws it."""
    n = len(erase)
    area = _uniform(n, *cfg.scale, gen) * h * w
    ratio = torch.exp(_uniform(n, *map(math.log, cfg.ratio), gen))
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    top = (torch.rand(n, generator=gen, dtype=torch.float64) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=gen, dtype=torch.float64) * (w - ew + 1)).floor()
    box = torch.stack([top, top + eh, left, left + ew]).long().to(device)[:, :, None]  # (4, B, 1)
    rows = torch.arange(h, device=device)[None]  # (1, H)
    cols = torch.arange(w, device=device)[None]
    in_rows = (rows >= box[0]) & (rows < box[1]) & erase.to(device)[:, None]  # (B, H)
    in_cols = (cols >= box[2]) & (cols < box[3])  # (B, W)
    return in_rows[:, :, None] & in_cols[:, None, :]
