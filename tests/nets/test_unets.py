"""Denoisers: shapes at every size, clear size errors, faithfulness to the report and to
lucidrains' design, exactness of the fast paths, gradients, and a small overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monet.diffusion import GaussianDiffusion
from monet.errors import ConfigError
from monet.nets.common import cpu_has_bf16
from monet.nets.unets import (
    Attention,
    AttnUnet,
    LibUnet,
    LinearAttention,
    ResnetBlock,
    SelfAttention,
    SimpleUnet,
    SinusoidalPositionEmbeddings,
    Upsample,
)

SIZES = (32, 64, 128, 256)

# lucidrains' denoising-diffusion-pytorch 2.3.4: Unet(dim=64, dim_mults=(1, 2, 4, 8)).
LUCIDRAINS_UNET_PARAMS = 35_711_491
# The report's SimpleUnet (DeepFindr's "Diffusion models from scratch"), less its unused up_conv.
REPORT_SIMPLE_UNET_PARAMS = 62_438_883


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(kind: str, size: int) -> nn.Module:
    if kind == "simple":
        return SimpleUnet(size, dim=8, dim_mults=(1, 1, 2, 2, 2), time_emb_dim=8)
    if kind == "attn":  # full-resolution attention at 128+ px costs seconds even this narrow
        return AttnUnet(
            size,
            dim=4,
            dim_mults=(1, 2, 2, 4, 4),
            time_emb_dim=8,
            heads=2,
            attn_max_size=None if size <= 64 else 32,
        )
    return LibUnet(size, dim=8, dim_mults=(1, 2, 2, 2), attn_heads=2, attn_dim_head=8)


@pytest.mark.parametrize("kind", ["simple", "attn", "lib"])
@pytest.mark.parametrize("size", SIZES)
def test_output_has_the_input_shape(kind, size):
    torch.manual_seed(0)
    net = tiny(kind, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = net(x, torch.tensor([0, 999]))
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    assert torch.isfinite(y).all()
    assert net.image_size == size and net.channels == 3


@pytest.mark.parametrize(
    "make,factor",
    [(lambda s: SimpleUnet(s), 16), (lambda s: AttnUnet(s), 16), (lambda s: LibUnet(s), 8)],
)
@pytest.mark.parametrize("size", [0, 12, 100, 250])
def test_bad_size_fails_at_construction_naming_value_and_sizes(make, factor, size):
    match = rf"image_size={size}.*multiple of {factor}.*64, 128, 256"
    with pytest.raises(ConfigError, match=match):
        make(size)
    assert issubclass(ConfigError, ValueError)


def test_wrong_input_size_is_reported():
    with pytest.raises(ValueError, match="divisible by 8; got 36x36"):
        LibUnet(32, dim=8, dim_mults=(1, 2, 2, 2))(torch.randn(1, 3, 36, 36), torch.tensor([1]))


def test_sinusoidal_embedding():
    emb = SinusoidalPositionEmbeddings(32)(torch.tensor([0, 10]))
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    assert emb[1, 0] == pytest.approx(torch.sin(torch.tensor(10.0)).item())  # frequency 1
    assert emb[1, 15] == pytest.approx(torch.sin(torch.tensor(10e-4)).item())  # 10000^-1


# -- the report's networks -----------------------------------------------------------------------


def test_simple_unet_is_the_reports():
    net = SimpleUnet()
    assert sum(p.numel() for p in net.parameters()) == REPORT_SIMPLE_UNET_PARAMS
    assert [b.conv1.out_channels for b in net.downs] == [128, 256, 512, 1024]
    assert [b.conv1.in_channels for b in net.ups] == [2048, 1024, 512, 256]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 16
    assert net.time_mlp[0](torch.tensor([3])).shape == (1, 32)
    assert net.output.kernel_size == (1, 1) and net.output.out_channels == 3


def test_attn_unet_has_the_reports_eight_attention_layers():
    net = AttnUnet()
    attns = [m for m in net.modules() if isinstance(m, SelfAttention)]
    assert [a.ln.normalized_shape[0] for a in attns] == [128, 256, 512, 1024, 512, 256, 128, 64]
    assert all(a.heads == 4 for a in attns)
    capped = AttnUnet(128, attn_max_size=32)
    widths = [a.ln.normalized_shape[0] for a in capped.modules() if isinstance(a, SelfAttention)]
    assert widths == [256, 512, 1024, 512, 256]  # 32, 16, 8 | 16, 32 px feature maps


def test_self_attention_computes_the_reports_layer():
    # The report's forward, with nn.MultiheadAttention holding the same weights.
    torch.manual_seed(0)
    sa = SelfAttention(16, heads=4)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    mha.in_proj_weight.data.copy_(sa.in_proj.weight)
    mha.in_proj_bias.data.copy_(sa.in_proj.bias)
    mha.out_proj.load_state_dict(sa.out_proj.state_dict())
    x = torch.randn(2, 16, 6, 6)
    tokens = x.view(2, 16, 36).swapaxes(1, 2)
    x_ln = sa.ln(tokens)
    att, _ = mha(x_ln, x_ln, x_ln)
    att = att + tokens
    ref = (sa.ff_self(att) + att).swapaxes(2, 1).view(2, 16, 6, 6)
    torch.testing.assert_close(sa(x), ref, rtol=1e-5, atol=1e-5)


# -- lucidrains' design --------------------------------------------------------------------------


def test_lib_unet_matches_lucidrains_parameter_count():
    n = sum(p.numel() for p in LibUnet().parameters())
    assert abs(n / LUCIDRAINS_UNET_PARAMS - 1) < 0.001


def test_lib_unet_layout():
    net = LibUnet(64)
    kinds = [type(level[2]).__name__ for level in net.downs]
    assert kinds == ["LinearAttention"] * 3 + ["Attention"]
    assert [type(level[2]).__name__ for level in net.ups] == ["Attention"] + ["LinearAttention"] * 3
    assert isinstance(net.mid_attn, Attention) and net.time_mlp[1].out_features == 256
    linear_only = LibUnet(64, full_attn_at_bottleneck=False)
    assert all(isinstance(level[2], LinearAttention) for level in linear_only.downs)


@pytest.mark.parametrize("dim_in", [16, 24])
def test_resnet_block_equals_the_layer_by_layer_block(dim_in):
    # conv -> GroupNorm -> (1 + scale, shift) from SiLU(time) -> SiLU -> conv -> GroupNorm -> SiLU
    torch.manual_seed(0)
    block = ResnetBlock(dim_in, 16, time_dim=12, groups=8)
    for p in block.parameters():  # norms away from their (1, 0) initialisation
        p.data.normal_(0, 0.5)
    x, t_emb = torch.randn(2, dim_in, 5, 5), torch.randn(2, 12)
    scale, shift = block.time(F.silu(t_emb))[:, :, None, None].chunk(2, dim=1)
    h = F.silu(block.norm1(block.conv1(x)) * (1 + scale) + shift)
    h = F.silu(block.norm2(block.conv2(h)))
    ref = h + (block.skip(x) if block.skip is not None else x)
    torch.testing.assert_close(block(x, F.silu(t_emb)), ref, rtol=1e-5, atol=1e-5)


def mem_kv_reference(attn: nn.Module, x: torch.Tensor, linear: bool) -> torch.Tensor:
    """Head-by-head attention with memory keys/values, as lucidrains writes it (LayerNorm)."""
    b, c, h, w = x.shape
    nh, d = attn.heads, attn.dim_head
    xn = F.layer_norm(x.permute(0, 2, 3, 1), (c,), attn.norm.weight, attn.norm.bias)
    q, k, v = (xn @ attn.to_qkv.weight.T).view(b, h * w, 3, nh, d).permute(2, 0, 3, 4, 1)
    mem_k, mem_v = attn.mem_kv.unsqueeze(1).expand(-1, b, -1, -1, -1)  # (B, nh, ., .)
    if linear:  # q, k, v: (B, nh, d, N)
        k, v = torch.cat((mem_k, k), -1).softmax(-1), torch.cat((mem_v, v), -1)
        out = torch.einsum("bhde,bhdn->bhen", k @ v.mT, q.softmax(-2) * d**-0.5)
        y = out.reshape(b, nh * d, h * w).mT @ attn.to_out.weight.T + attn.to_out.bias
        y = attn.out_norm(y)
    else:
        k, v = torch.cat((mem_k, k.mT), -2), torch.cat((mem_v, v.mT), -2)
        scores = q.mT @ k.mT * d**-0.5  # (B, nh, N, m+N)
        out = scores.softmax(-1) @ v  # (B, nh, N, d)
        y = attn.to_out(out.transpose(1, 2).reshape(b, h * w, nh * d))
    return y.mT.reshape(b, c, h, w)


@pytest.mark.parametrize("klass", [LinearAttention, Attention])
@pytest.mark.parametrize("channels_last", [False, True])
def test_attention_equals_the_head_by_head_computation(klass, channels_last):
    torch.manual_seed(0)
    attn = klass(16, heads=2, dim_head=8)
    x = torch.randn(2, 16, 6, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = mem_kv_reference(attn, x, linear=klass is LinearAttention)
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


def test_fast_upsample_is_nearest_upsample_then_conv():
    torch.manual_seed(0)
    up = Upsample(6, 5).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    ref = up.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    out = up(x)
    assert out.shape == (2, 5, 10, 14)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    params = [x, up.conv.weight, up.conv.bias]
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b)


def test_lib_unet_gradients_are_exact():
    torch.manual_seed(0)
    net = LibUnet(16, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=4).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([3, 600])
    assert torch.autograd.gradcheck(lambda x: net(x, t), (x,), fast_mode=True)


def test_lib_unet_channels_last_is_only_a_layout():
    torch.manual_seed(0)
    a = LibUnet(32, dim=8, dim_mults=(1, 2, 2, 2), attn_heads=2, attn_dim_head=8)
    b = LibUnet(
        32, dim=8, dim_mults=(1, 2, 2, 2), attn_heads=2, attn_dim_head=8, channels_last=False
    )
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5, 50])
    torch.testing.assert_close(a(x, t), b(x, t), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hardware", ["1", "0"], ids=["bf16-units", "emulated"])
def test_lib_unet_bf16_autocast(hardware, monkeypatch):
    monkeypatch.setenv("MONET_BF16", hardware)  # both branches, whatever this CPU has
    torch.manual_seed(0)
    kw = dict(dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=4)
    net, plain = LibUnet(16, **kw), LibUnet(16, fp32_if_bf16_emulated=False, **kw)
    plain.load_state_dict(net.state_dict())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 50])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_plain = net(x, t), plain(x, t)
    assert y_plain.dtype == torch.bfloat16  # autocast as asked
    if cpu_has_bf16():
        assert y.dtype == torch.bfloat16
    else:  # emulated bfloat16: the network keeps float32
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, net(x, t))
    torch.testing.assert_close(y.float(), y_plain.float(), rtol=0.1, atol=0.1)


# -- all of them ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["simple", "attn", "lib"])
def test_every_parameter_gets_a_gradient(kind):
    # No unused parameters: DDP then needs no find_unused_parameters.
    torch.manual_seed(0)
    net = tiny(kind, 32)
    loss = GaussianDiffusion("linear", 100).loss(net, torch.rand(2, 3, 32, 32) * 2 - 1)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.slow
def test_small_lib_unet_overfits_eight_images():
    torch.manual_seed(0)
    x0 = F.interpolate(torch.rand(8, 3, 4, 4), size=16, mode="bilinear") * 2 - 1
    net = LibUnet(16, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
    process = GaussianDiffusion("linear", 1000, "eps", "l1")
    gen = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (64,), generator=gen)
    noise = torch.randn(64, 3, 16, 16, generator=gen)

    def held_loss() -> float:  # the same t and noise every time
        with torch.no_grad():
            return process.loss(net, x0.repeat(8, 1, 1, 1), t, noise).item()

    before = held_loss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(80):
        loss = process.loss(net, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_loss()
    assert after < 0.4 * before, (before, after)


def test_lib_unet_shaped_for_speed_keeps_its_output_and_default_keys():
    full = LibUnet(image_size=32, dim=8, dim_mults=(1, 2, 4), attn_heads=2, attn_dim_head=8)
    fast = LibUnet(
        image_size=32,
        dim=8,
        dim_mults=(1, 2, 4),
        attn_heads=2,
        attn_dim_head=8,
        blocks=1,
        attn_from_level=1,
    )
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3.0, 500.5])  # fractional steps too
    assert fast(x, t).shape == full(x, t).shape == (2, 3, 32, 32)
    # one block a level: a down level holds block, attention, downsample; no attention at 32 px
    assert len(fast.downs[0]) == 3 and isinstance(fast.downs[0][1], nn.Identity)
    assert not isinstance(fast.downs[1][1], nn.Identity)
    assert sum(p.numel() for p in fast.parameters()) < sum(p.numel() for p in full.parameters())
    # the default shape keeps the state_dict keys checkpoints were written with
    assert (
        "downs.0.2.to_qkv.weight" in full.state_dict() and "downs.0.3.weight" in full.state_dict()
    )
    with pytest.raises(ConfigError, match="blocks=0 must be >= 1"):
        LibUnet(image_size=32, dim=8, dim_mults=(1, 2), blocks=0)
