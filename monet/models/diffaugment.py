"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real and fake images
alike, in the discriminator and the generator step, so a discriminator trained on 300 images
cannot memorise them. Images are float (B, C, H, W) in [-1, 1]; every op is differentiable in x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monet.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' or None -> ()."""
    ops = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [p for p in ops if p not in POLICIES]
    if unknown:
        raise ConfigError(
            f"DiffAugment policy {policy!r}: unknown {unknown}; use any of "
            f"{', '.join(POLICIES)}, comma-separated."
        )
    return ops


def diff_augment(
    x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply each op of `policy` in order, with fresh random parameters per image."""
    for op in policy:
        x = _OPS[op](x, generator)
    return x


def _rand(x: torch.Tensor, *shape: int, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) on x's device, drawn in float32 whatever x's dtype (autocast)."""
    return torch.rand(shape, generator=generator, device=x.device).to(x.dtype)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (the paper's ranges)."""
    b = x.shape[0]
    x = x + (_rand(x, b, 1, 1, 1, generator=generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, b, 1, 1, 1, generator=generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, b, 1, 1, 1, generator=generator) + 0.5) + mean


def translation(
    x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.125
) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (_rand(x, b, 1, 1, generator=generator) * (2 * sh + 1)).long() - sh  # (B, 1, 1)
    dx = (_rand(x, b, 1, 1, generator=generator) * (2 * sw + 1)).long() - sw
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy).clamp(-1, h)  # (B, H, 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx).clamp(-1, w)  # (B, 1, W)
    padded = F.pad(x, (1, 1, 1, 1))  # index -1 and H land on the zero border
    flat = (rows + 1) * (w + 2) + (cols + 1)  # (B, H, W) into the padded (H+2)*(W+2) image
    out = padded.flatten(2).gather(2, flat.flatten(1)[:, None].expand(-1, x.shape[1], -1))
    return out.view_as(x)


def cutout(
    x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5
) -> torch.Tensor:
    """Zero a square of `ratio` of the side at a random centre in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (_rand(x, b, 1, generator=generator) * (h + 1 - ch % 2)).long()  # (B, 1)
    cx = (_rand(x, b, 1, generator=generator) * (w + 1 - cw % 2)).long()
    rows = torch.arange(h, device=x.device)[None]  # (1, H)
    cols = torch.arange(w, device=x.device)[None]
    in_rows = (rows >= cy - ch // 2) & (rows < cy - ch // 2 + ch)  # (B, H)
    in_cols = (cols >= cx - cw // 2) & (cols < cx - cw // 2 + cw)  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}
