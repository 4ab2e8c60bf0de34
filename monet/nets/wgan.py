"""The report's WGAN-GP generator and critic, generalised from 64 px to 32-256 px.

At 64 px they are exactly the report's networks: a 4x4 ConvTranspose from the latent, three
up-blocks (1024 -> 512 -> 256 -> 128 channels with `features` = 64) and a Tanh output; the
critic mirrors it with InstanceNorm(affine) and no sigmoid. Each doubling of the image size adds
one block.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from monet.errors import ConfigError
from monet.nets.common import check_image_size, dcgan_init

SIZES = (32, 64, 128, 256)


class WGANGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, channels, S, S) in [-1, 1].

    `upsample`: ``transposed`` (the report's 4x4 stride-2 transposed convs) or ``nearest``
    (nearest-neighbour doubling then a 3x3 conv, the same widths). Stride-2 transposed convs
    leave a periodic pattern that a critic weakened by DiffAugment does not train away: at
    64 px a dot every 4 px (every 16 px in 256 px exports); ``nearest`` has no such pattern
    (Odena et al. 2016, "Deconvolution and checkerboard artifacts").
    """

    def __init__(
        self,
        latent_dim: int = 100,
        features: int = 64,
        image_size: int = 64,
        channels: int = 3,
        upsample: Literal["transposed", "nearest"] = "transposed",
    ) -> None:
        super().__init__()
        check_image_size("WGANGenerator", image_size, sizes=SIZES)
        n_up = int(math.log2(image_size)) - 3  # 4 px -> S/2
        self.latent_dim, self.image_size = latent_dim, image_size
        widths = [max(features * 16 >> i, features // 2) for i in range(n_up + 1)]
        layers = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]  # (B, 16f, 4, 4)
        if upsample not in ("transposed", "nearest"):
            raise ConfigError(f"WGANGenerator upsample={upsample!r}: use transposed or nearest.")

        def up(c_in: int, c_out: int, bias: bool) -> list[nn.Module]:
            if upsample == "transposed":
                return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]
            return [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]

        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [*up(c_in, c_out, False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [*up(widths[-1], channels, True), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, latent, 1, 1) -> (B, C, S, S)


class WGANCritic(nn.Module):
    """image (B, channels, S, S) -> score (B,): a real-valued critic, no sigmoid."""

    def __init__(self, features: int = 64, image_size: int = 64, channels: int = 3) -> None:
        super().__init__()
        check_image_size("WGANCritic", image_size, sizes=SIZES)
        n_down = int(math.log2(image_size)) - 2  # S -> 4 px
        self.image_size = image_size
        widths = [min(features << i, features * 16) for i in range(n_down)]
        layers = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(c_out, affine=True),
                nn.LeakyReLU(0.2),
            ]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0)]  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (B, 1, 1, 1) -> (B,)
