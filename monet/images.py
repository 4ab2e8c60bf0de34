"""The pixel conversions every part shares: uint8 [0, 255] <-> float [-1, 1], and the one resize
of an exported image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (any shape) -> float32 in [-1, 1], on the images' device."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (clamped) -> uint8 in [0, 255], rounded."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Float (B, C, h, w) -> float32 (B, C, size, size), bicubic with antialiasing; unchanged
    (as float32) when `size` is None or already the side.

    The resize of every exported image, a folder of PNGs or a Kaggle zip alike: PIL's bicubic
    kernel (a = -0.5), widened when shrinking, so a downscale is filtered too.
    """
    images = images.float()
    if size is not None and images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True)
    return images
