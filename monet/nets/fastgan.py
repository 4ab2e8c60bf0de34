"""A light generator and discriminator for few-shot sets, after FastGAN (Liu et al. 2021).

Generator: the latent becomes a 4x4 map (a transposed conv, BatchNorm, GLU), then each doubling
is nearest-neighbour upsampling, a 3x3 conv, BatchNorm and a GLU (Dauphin et al. 2017).
Upsampling then convolving has no transposed-conv overlap pattern, so no periodic dot or
checkerboard grid (Odena et al. 2016, "Deconvolution and checkerboard artifacts"). Skip-layer
excitation (FastGAN Sec. 3.1) gates the channels of the 32 px and larger maps with a summary of
the 4 px and 8 px maps: a cheap long-range path that shapes a whole painting's layout and palette.

Discriminator: strided 4x4 convs with LeakyReLU (no normalisation: the GAN's `spectral_norm`
adds spectral normalisation to every layer), down to 4x4 and one score per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from monet.nets.common import check_image_size

SIZES = (32, 64, 128, 256)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(2 * c_out),
        nn.GLU(dim=1),
    )


class SkipExcitation(nn.Module):
    """Channel gates for a large map from a small one (FastGAN's skip-layer excitation)."""

    def __init__(self, c_small: int, c_large: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(c_small, c_large, 4, 1, 0, bias=False),
            nn.SiLU(),
            nn.Conv2d(c_large, c_large, 1, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.net(small)


class FastGANGenerator(nn.Module):
    """z (B, latent_dim) -> image (B, channels, S, S) in [-1, 1].

    Widths halve with each doubling from `features` x 8 at 4 px (never below `features` / 2).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        features: int = 32,
        image_size: int = 64,
        channels: int = 3,
        skip_excitation: bool = True,
    ) -> None:
        super().__init__()
        check_image_size("FastGANGenerator", image_size, sizes=SIZES)
        n_up = int(math.log2(image_size)) - 2  # 4 px -> S
        self.latent_dim, self.image_size = latent_dim, image_size
        widths = [max(features * 8 >> i, features // 2) for i in range(n_up + 1)]
        self.init = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(2 * widths[0]),
            nn.GLU(dim=1),
        )
        self.ups = nn.ModuleList(_up(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # gates: the 32 px map from the 4 px one, the 64 px map from the 8 px one (and so on)
        self.excite = nn.ModuleDict(
            {
                str(i): SkipExcitation(widths[i - 3], widths[i])
                for i in range(3, n_up + 1)
                if skip_excitation
            }
        )
        self.to_rgb = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        maps = [self.init(z[:, :, None, None])]
        for i, up in enumerate(self.ups, start=1):
            x = up(maps[-1])
            if str(i) in self.excite:
                x = self.excite[str(i)](maps[i - 3], x)
            maps.append(x)
        return self.to_rgb(maps[-1])


class FastGANDiscriminator(nn.Module):
    """image (B, channels, S, S) -> score (B,); widths double from `features`, at most x8."""

    def __init__(self, features: int = 32, image_size: int = 64, channels: int = 3) -> None:
        super().__init__()
        check_image_size("FastGANDiscriminator", image_size, sizes=SIZES)
        n_down = int(math.log2(image_size)) - 2  # S -> 4 px
        self.image_size = image_size
        widths = [channels] + [min(features << i, features * 8) for i in range(n_down)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()
