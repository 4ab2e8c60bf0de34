"""CUT's pieces beside the ResNet generator (Park et al. 2020, Sec. 3.2 and App. C): the
features of chosen layers of the generator's encoder, and the patch embedding head (a 2-layer
MLP per layer, 256 features, L2-normalised) that PatchNCE compares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def layer_features(
    net: nn.Sequential, x: torch.Tensor, layers: Sequence[int], full: bool = True
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(the outputs of `net[i]` for i in `layers`, the output of the whole `net` or None).

    With `full` false, stops after the last layer asked for (CUT's ``encode_only``): the
    features of a translated image cost only the encoder's part of a generator pass.
    """
    wanted, last = set(layers), max(layers)
    features = []
    for i, layer in enumerate(net):
        x = layer(x)
        if i in wanted:
            features.append(x)
        if i == last and not full:
            return features, None
    return features, x


class PatchHead(nn.Module):
    """One 2-layer MLP (Linear, ReLU, Linear) per encoder layer, built eagerly from the layers'
    channel counts (the reference builds it at the first forward), N(0, 0.02) weights.

    `forward(i, features, ids)`: features (B, C, H, W) of layer i at the flat locations `ids`
    (P of the H x W) -> (B, P, dim) embeddings of unit length.
    """

    def __init__(self, channels: Sequence[int], dim: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, i: int, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        patches = features.flatten(2).transpose(1, 2)[:, ids]  # (B, H*W, C) -> (B, P, C)
        return F.normalize(self.mlps[i](patches), dim=-1)
