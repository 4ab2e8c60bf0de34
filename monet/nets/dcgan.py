"""The report's DCGAN (a Keras model) in PyTorch: 256 px by default, fewer blocks below.

Generator: Dense(100 -> 16*16*512), reshape, ConvTranspose 6x6 stride 2 blocks (256, 128, 64, 32
filters, LeakyReLU 0.2), then a 6x6 stride-1 'same' layer to 3 channels and Tanh. A stride-1
transposed conv is a conv, and PyTorch pads an even 'same' kernel only in Conv2d, so the last
layer is a Conv2d. Discriminator: Conv 6x6 stride 2 with 32, 64, 128, 256 filters, BatchNorm from
the second, LeakyReLU 0.2, Dropout 0.3, Linear to one logit (no sigmoid: the loss has it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from monet.nets.common import check_image_size, dcgan_init

SIZES = (32, 64, 128, 256)


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, channels, S, S) in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 256,
        channels: int = 3,
        widths: tuple[int, ...] = (512, 256, 128, 64, 32),
    ) -> None:
        super().__init__()
        check_image_size("DCGANGenerator", image_size, sizes=SIZES)
        n_up = int(math.log2(image_size)) - 4  # 16 px -> S
        if len(widths) < n_up + 1:
            raise ValueError(f"DCGANGenerator needs {n_up + 1} widths at {image_size} px.")
        self.latent_dim, self.image_size, self.start = latent_dim, image_size, widths[0]
        self.project = nn.Linear(latent_dim, 16 * 16 * widths[0])
        # The report's blocks, from the smallest image up: at 64 px the first two of four.
        widths = widths[: n_up + 1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 6, 2, 2), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(widths[-1], channels, 6, 1, padding="same"), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.start, 16, 16)  # (B, 512, 16, 16)
        return self.net(x)


class DCGANDiscriminator(nn.Module):
    """image (B, channels, S, S) -> logit (B,)."""

    def __init__(
        self,
        image_size: int = 256,
        channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_image_size("DCGANDiscriminator", image_size, sizes=SIZES)
        self.image_size = image_size
        layers: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 6, 2, 2))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        side = image_size // 2 ** len(widths)
        layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * side * side, 1)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (B, 1) -> (B,)
