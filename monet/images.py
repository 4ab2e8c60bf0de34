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
    """(B, C, h, w) -> (B, C, size, size), bicubic with antialiasing; unchanged when `size` is
    None or already the side. uint8 stays uint8 (torch's fast kernel for 8-bit images, the one
    torchvision's Resize uses); floats come back as float32.

    The resize of every exported image, a folder of PNGs or a Kaggle zip alike: PIL's bicubic
    kernel (a = -0.5), widened when shrinking, so a downscale is filtered too.
    """
    if size is None or images.shape[-2:] == (size, size):
        return images if images.dtype == torch.uint8 else images.float()
    if images.dtype == torch.uint8:  # NHWC: the kernel's fast path, about 6x the float one
        images = images.contiguous(memory_format=torch.channels_last)
        resized = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True)
        return resized.contiguous()
    return F.interpolate(images.float(), size=(size, size), mode="bicubic", antialias=True)
