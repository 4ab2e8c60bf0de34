"""CycleGAN's generator and 70x70 PatchGAN discriminator (Zhu et al. 2017, Sec. 4 and App. 7.2).

Both match the pytorch-CycleGAN-and-pix2pix reference (``resnet_9blocks`` / ``basic`` with
InstanceNorm): instance norm without affine parameters or running statistics, conv biases on,
N(0, 0.02) weights. Both are fully convolutional: `image_size` is recorded, not built in.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from monet.errors import ConfigError
from monet.nets.common import check_image_size, dcgan_init


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """x + (pad, 3x3 conv, IN, ReLU, pad, 3x3 conv, IN)(x): the paper's R256 block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """image (B, channels, H, W) in [-1, 1] -> image of the same shape in [-1, 1].

    c7s1-f, d2f, d4f, `blocks` x R4f, u2f, uf, c7s1-channels with Tanh (the paper uses 6
    blocks at 128 px and 9 at 256 px). H and W must be multiples of 4 (two stride-2 halvings).
    `upsample`: ``transposed`` (3x3 stride-2 transposed convs, as in the paper) or ``nearest``
    (nearest-neighbour doubling then a reflection-padded 3x3 conv), which leaves no
    checkerboard pattern (Odena et al. 2016).
    """

    def __init__(
        self,
        features: int = 64,
        blocks: int = 9,
        channels: int = 3,
        image_size: int = 256,
        upsample: Literal["transposed", "nearest"] = "transposed",
    ) -> None:
        super().__init__()
        check_image_size("ResnetGenerator", image_size, multiple_of=4, at_least=32)
        if upsample not in ("transposed", "nearest"):
            raise ConfigError(f"ResnetGenerator upsample={upsample!r}: use transposed or nearest.")
        self.image_size = image_size
        f = features

        def up(c_in: int, c_out: int) -> list[nn.Module]:
            if upsample == "transposed":
                return [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1)]
            return [nn.Upsample(scale_factor=2), nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, f, 7),
            _norm(f),
            nn.ReLU(),
        ]
        for c_in, c_out in ((f, 2 * f), (2 * f, 4 * f)):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), _norm(c_out), nn.ReLU()]
        layers += [ResidualBlock(4 * f) for _ in range(blocks)]
        for c_in, c_out in ((4 * f, 2 * f), (2 * f, f)):
            layers += [*up(c_in, c_out), _norm(c_out), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(f, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(
                f"ResnetGenerator got a {h}x{w} image: height and width must be multiples of 4; "
                f"resize or crop the input."
            )
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """image (B, channels, H, W) -> patch scores (B, 1, H', W'): raw scores, no sigmoid.

    The PatchGAN of Isola et al. 2017 as CycleGAN uses it: C64 (no norm), then `layers` - 1
    more 4x4 stride-2 convs doubling the width (capped at 8 x features), one 4x4 stride-1 conv,
    and a 1-channel 4x4 stride-1 output, all padded by 1 and with LeakyReLU(0.2). `layers` is
    the reference's n_layers: the number of stride-2 convs. With the defaults each score sees
    a 70x70 input patch, and a 256 px image gives 30x30 scores.
    """

    def __init__(
        self, features: int = 64, layers: int = 3, channels: int = 3, image_size: int = 256
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"PatchDiscriminator layers={layers}: use at least 1 (default 3).")
        self.image_size = image_size
        widths = [features * min(2**i, 8) for i in range(layers + 1)]
        net: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 2 if i < layers - 1 else 1
            net += [nn.Conv2d(c_in, c_out, 4, stride, 1), _norm(c_out), nn.LeakyReLU(0.2)]
        net += [nn.Conv2d(widths[-1], 1, 4, 1, 1)]
        self.net = nn.Sequential(*net)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
