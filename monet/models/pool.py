"""A history of generated images for the discriminator (Shrivastava et al. 2017, Sec. 2.3).

CycleGAN (Zhu et al. 2017, Sec. 4) shows its discriminators a mix of the newest fakes and up to
50 older ones, which damps oscillation. Its randomness comes only from a CPU `torch.Generator`
that the caller owns, and `state_dict` holds the images as one tensor, so a resumed run
continues exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from monet.errors import ConfigError


class ImagePool:
    """Up to `size` past images; `query` swaps new images for stored ones at random.

    Args:
        size: images kept (CycleGAN: 50); 0 disables the pool: `query` returns its input
            (detached, like every other answer).
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ConfigError(f"ImagePool size={size}: use 0 (no pool) or more (CycleGAN: 50).")
        self.size = size
        self.count = 0
        self.images: Tensor | None = None  # (size, C, H, W), allocated on the first query

    def query(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The batch to show the discriminator, detached, one image per image of `images`.

        While the pool fills, each image is stored and returned. Once it is full, each image
        is, with probability 0.5, stored in place of a random stored image, which is returned
        instead; otherwise it is returned itself.
        """
        images = images.detach()
        if self.size == 0:
            return images
        if self.images is None or self.images.shape[1:] != images.shape[1:]:
            self.images = images.new_empty(self.size, *images.shape[1:])  # new shape: start over
            self.count = 0
        self.images = self.images.to(images)  # follows the model across devices and dtypes
        out = images.clone()
        for i in range(images.shape[0]):
            if self.count < self.size:
                self.images[self.count] = images[i]
                self.count += 1
            elif torch.rand((), generator=generator).item() < 0.5:  # a CPU draw: no device sync
                j = int(torch.randint(self.size, (), generator=generator))
                out[i] = self.images[j]
                self.images[j] = images[i]
        return out

    def state_dict(self) -> dict[str, Tensor | int]:
        """The stored images (count, C, H, W) and their count, for an exact resume."""
        if self.images is None:
            return {"images": torch.empty(0), "count": 0}
        return {"images": self.images[: self.count].clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Restore what `state_dict` returned; the images move to the device of the next query."""
        images, count = state["images"], int(state["count"])
        if count > self.size:
            raise ConfigError(
                f"ImagePool: the checkpoint holds {count} images but size={self.size}: "
                f"resume with size >= {count}."
            )
        self.count = count
        if count == 0:
            self.images = None
            return
        self.images = images.new_empty(self.size, *images.shape[1:])
        self.images[:count] = images[:count]
