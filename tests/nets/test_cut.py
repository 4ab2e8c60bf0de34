"""CUT's encoder features of the ResNet generator and its patch embedding head."""

from __future__ import annotations

import torch

from monet.nets import ResnetGenerator
from monet.nets.cut import PatchHead, layer_features


def test_layer_features_are_the_generators_own_activations():
    net = ResnetGenerator(features=4, blocks=2, image_size=32).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    features, out = layer_features(net.net, x, (0, 4, 7, 10))
    assert torch.equal(out, net(x))  # the whole pass, unchanged
    shapes = [tuple(f.shape) for f in features]
    assert shapes == [(2, 3, 38, 38), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 8, 8)]
    assert torch.equal(features[1], net.net[:5](x))
    encoded, none = layer_features(net.net, x, (0, 4, 7, 10), full=False)  # encoder only
    assert none is None and all(torch.equal(a, b) for a, b in zip(encoded, features))


def test_the_head_embeds_the_chosen_locations_at_unit_length():
    torch.manual_seed(0)
    head = PatchHead([3, 8], dim=16)
    assert [m[0].in_features for m in head.mlps] == [3, 8]
    features = torch.randn(2, 8, 5, 5)
    ids = torch.tensor([0, 7, 24])
    z = head(1, features, ids)
    assert z.shape == (2, 3, 16)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2, 3), atol=1e-6)
    # location 7 is row 1, column 2 of the 5x5 map
    mlp = head.mlps[1]
    expected = torch.nn.functional.normalize(mlp(features[:, :, 1, 2]), dim=-1)
    assert torch.allclose(z[:, 1], expected, atol=1e-6)
