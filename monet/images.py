"""The two pixel conversions every part shares: uint8 [0, 255] <-> float [-1, 1]."""

from __future__ import annotations

import torch


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (any shape) -> float32 in [-1, 1], on the images' device."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (clamped) -> uint8 in [0, 255], rounded."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
