"""Denoisers: pure nn.Modules mapping (x (B, C, H, W), t (B,) integer steps) -> (B, C, H, W).

- `SimpleUnet`: the report's base U-Net (BatchNorm blocks, ConvTranspose up path).
- `AttnUnet`: the report's improved U-Net, the same blocks with self-attention after every block.
- `LibUnet`: the design of lucidrains' denoising-diffusion-pytorch `Unet` (ResNet blocks with
  GroupNorm and time scale-shift, linear attention, full attention at the bottleneck), written
  here for speed: channels-last activations, fused attention kernels, fewer passes over memory.

All three name their widths as lucidrains' `Unet` does: level i (at 1/2**i of the image side)
has `dim * dim_mults[i]` channels, so `len(dim_mults) - 1` halvings.

What each network predicts (noise, x0 or v) is the diffusion process's business, not theirs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from monet.errors import ConfigError
from monet.nets.common import check_image_size, emulated_bf16_autocast


def check_input(name: str, x: Tensor, factor: int) -> None:
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"{name} needs height and width divisible by {factor}; got {h}x{w}.")


class SinusoidalPositionEmbeddings(nn.Module):
    """Integer steps t (B,) -> (B, dim) sines and cosines of t at geometric frequencies."""

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if dim % 2 or dim < 4:
            raise ConfigError(f"time embedding dim={dim} must be even and at least 4.")
        half = dim // 2
        # Vaswani et al. 2017, Sec. 3.5, frequencies theta^(-i / (half - 1)), i = 0 .. half-1.
        freqs = torch.exp(-math.log(theta) * torch.arange(half, dtype=torch.float64) / (half - 1))
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t.float()[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat((args.sin(), args.cos()), dim=-1)  # (B, dim)


# --------------------------------------------------------------------------------------------
# The report's U-Nets
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    """The report's block: conv, ReLU, BatchNorm, + time, conv, ReLU, BatchNorm, then a
    stride-2 conv down (or, with `up`, a stride-2 ConvTranspose up from 2 * in_ch inputs).

    The report's block also builds an `up_conv` that its forward never uses; it is left out
    (unused parameters break DDP unless `find_unused_parameters` is set).
    """

    def __init__(self, in_ch: int, out_ch: int, time_emb_dim: int, up: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(time_emb_dim, out_ch)
        if up:
            self.conv1 = nn.Conv2d(2 * in_ch, out_ch, 3, padding=1)
            self.transform = nn.ConvTranspose2d(out_ch, out_ch, 4, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            self.transform = nn.Conv2d(out_ch, out_ch, 4, 2, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        h = self.bn1(self.relu(self.conv1(x)))
        h = h + self.relu(self.linear(t_emb))[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        h = self.bn2(self.relu(self.conv2(h)))
        return self.transform(h)  # (B, C, H/2, W/2), or (B, C, 2H, 2W) with up


class SimpleUnet(nn.Module):
    """The report's base U-Net: four down blocks 64 -> 1024 channels, four up blocks back,
    a 32-dim sinusoidal time embedding and a 1x1 output conv."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8, 16),
        time_emb_dim: int = 32,
    ) -> None:
        super().__init__()
        self.factor = 2 ** (len(dim_mults) - 1)
        check_image_size("SimpleUnet", image_size, multiple_of=self.factor)
        self.image_size, self.channels = image_size, channels
        down_channels = tuple(dim * m for m in dim_mults)
        up_channels = tuple(reversed(down_channels))
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(time_emb_dim),
            nn.Linear(time_emb_dim, time_emb_dim),
            nn.ReLU(),
        )
        self.conv0 = nn.Conv2d(channels, down_channels[0], 3, padding=1)
        self.downs = nn.ModuleList(
            Block(c_in, c_out, time_emb_dim)
            for c_in, c_out in zip(down_channels, down_channels[1:])
        )
        self.ups = nn.ModuleList(
            Block(c_in, c_out, time_emb_dim, up=True)
            for c_in, c_out in zip(up_channels, up_channels[1:])
        )
        self.output = nn.Conv2d(up_channels[-1], channels, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        check_input("SimpleUnet", x, self.factor)
        t_emb = self.time_mlp(t)
        x = self.conv0(x)
        skips = []
        for down in self.downs:
            x = down(x, t_emb)
            skips.append(x)
        for up in self.ups:
            # As in the report, the first up block sees the bottom features twice.
            x = up(torch.cat((x, skips.pop()), dim=1), t_emb)
        return self.output(x)


class SelfAttention(nn.Module):
    """The report's attention layer over the H*W positions: x + MHA(LN(x)), then + FF(LN(.)).

    The parameters are those of `nn.MultiheadAttention` (fused in-projection, out-projection);
    the attention itself runs in `F.scaled_dot_product_attention`, so fused kernels are used.
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"SelfAttention: heads={heads} must divide channels={channels}.")
        self.heads = heads
        self.ln = nn.LayerNorm(channels)
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)
        self.ff_self = nn.Sequential(
            nn.LayerNorm(channels),
            nn.Linear(channels, channels),
            nn.GELU(),
            nn.Linear(channels, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = self.in_proj(self.ln(tokens)).view(b, h * w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, HW, hs)
        att = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        att = att.transpose(1, 2).reshape(b, h * w, c)  # (B, HW, C)
        tokens = tokens + self.out_proj(att)
        tokens = tokens + self.ff_self(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


class AttnUnet(nn.Module):
    """The report's improved U-Net: `SimpleUnet`'s blocks with a `SelfAttention` after each of
    the four down blocks (sa1-sa4) and the four up blocks (sa5-sa8).

    `attn_max_size` limits attention to feature maps at most that many pixels wide; None (the
    report) attends everywhere, including at full resolution, which costs (H*W)² per layer.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8, 16),
        time_emb_dim: int = 32,
        heads: int = 4,
        attn_max_size: int | None = None,
    ) -> None:
        super().__init__()
        self.factor = 2 ** (len(dim_mults) - 1)
        check_image_size("AttnUnet", image_size, multiple_of=self.factor)
        self.image_size, self.channels = image_size, channels
        widths = [dim * m for m in dim_mults]
        sizes = [image_size // 2**i for i in range(len(widths))]  # side length at each width

        def attention(width: int, size: int) -> nn.Module:
            if attn_max_size is not None and size > attn_max_size:
                return nn.Identity()
            return SelfAttention(width, heads)

        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(time_emb_dim),
            nn.Linear(time_emb_dim, time_emb_dim),
            nn.ReLU(),
        )
        self.conv0 = nn.Conv2d(channels, widths[0], 3, padding=1)
        pairs = list(zip(widths, widths[1:]))
        self.downs = nn.ModuleList(Block(c_in, c_out, time_emb_dim) for c_in, c_out in pairs)
        self.down_attns = nn.ModuleList(
            attention(c_out, s) for (_, c_out), s in zip(pairs, sizes[1:])
        )
        self.ups = nn.ModuleList(
            Block(c_out, c_in, time_emb_dim, up=True) for c_in, c_out in reversed(pairs)
        )
        self.up_attns = nn.ModuleList(
            attention(c_in, s) for (c_in, _), s in zip(reversed(pairs), reversed(sizes[:-1]))
        )
        self.output = nn.Conv2d(widths[0], channels, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        check_input("AttnUnet", x, self.factor)
        t_emb = self.time_mlp(t)
        x = self.conv0(x)
        skips = []
        for down, attn in zip(self.downs, self.down_attns):
            x = attn(down(x, t_emb))
            skips.append(x)
        for up, attn in zip(self.ups, self.up_attns):
            x = attn(up(torch.cat((x, skips.pop()), dim=1), t_emb))
        return self.output(x)


# --------------------------------------------------------------------------------------------
# lucidrains' Unet design
# --------------------------------------------------------------------------------------------


def channel_layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """LayerNorm over the channels of (B, C, H, W); returns tokens (B, H, W, C).

    For channels-last x the permute is free and the fused LayerNorm kernel reads it in place.
    """
    return norm(x.permute(0, 2, 3, 1))  # (B, H, W, C)


def tokens_to_image(y: Tensor) -> Tensor:
    return y.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W), channels-last memory


class ResnetBlock(nn.Module):
    """conv3x3 -> GroupNorm -> time scale-shift -> SiLU -> conv3x3 -> GroupNorm -> SiLU, + skip.

    The time scale-shift and the first norm's affine are folded into one multiply-add, so the
    block makes one pass over the activations fewer than the layer-by-layer version.
    """

    def __init__(
        self, dim_in: int, dim_out: int, time_dim: int, groups: int = 8, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim_out % groups:
            raise ConfigError(f"GroupNorm: groups={groups} must divide channels={dim_out}.")
        self.time = nn.Linear(time_dim, 2 * dim_out)  # applied to SiLU(time embedding)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, dim_out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else None

    def forward(self, x: Tensor, t_act: Tensor) -> Tensor:
        scale, shift = self.time(t_act)[:, :, None, None].chunk(2, dim=1)  # 2 x (B, C, 1, 1)
        # GroupNorm's (w, b) then (1 + scale, shift): h * w(1 + scale) + b(1 + scale) + shift.
        w = self.norm1.weight[:, None, None] * (1 + scale)  # (B, C, 1, 1)
        b = self.norm1.bias[:, None, None] * (1 + scale) + shift
        h = F.group_norm(self.conv1(x), self.norm1.num_groups, eps=self.norm1.eps)
        h = self.dropout(F.silu(torch.addcmul(b, h, w)))
        h = F.silu(self.norm2(self.conv2(h)))
        # In place: SiLU saves its input, not its output, for backward.
        return h.add_(x if self.skip is None else pointwise(self.skip, x))


class LinearAttention(nn.Module):
    """Linear attention (Shen et al. 2021): softmax over features for q and over positions for
    k, so the cost is linear in H*W. Learned memory keys/values, LayerNorm before and after.

    Written for full resolution, where the cost is memory traffic, not arithmetic: the per-head
    contexts softmax(k)^T v come from (e^T xn) W_v^T with e = exp(k - max), so v is never built
    and the softmax's normaliser divides the small contexts; the output projection is folded
    into the contexts too. The result is that of the head-by-head computation.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, num_mem_kv: int = 4) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        hidden = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.mem_kv = nn.Parameter(torch.randn(2, heads, dim_head, num_mem_kv))
        self.to_qkv = nn.Linear(dim, 3 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, dim)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        nh, d = self.heads, self.dim_head
        hidden, n = nh * d, h * w
        xn = channel_layer_norm(self.norm, x).view(b, n, c)  # (B, N, C)
        w_q, w_k, w_v = self.to_qkv.weight.split(hidden)  # 3 x (nh*d, C)
        q = F.linear(xn, w_q).view(b, n, nh, d).softmax(dim=-1)  # (B, N, nh, d), over features
        # Softmax over the positions and the memory slots, for each of the nh*d key features.
        k = F.linear(xn, w_k)  # (B, N, nh*d)
        mem_k, mem_v = self.mem_kv.flatten(1, 2).mT  # 2 x (m, nh*d)
        top = torch.maximum(k.detach().amax(dim=1), mem_k.detach().amax(dim=0))  # (B, nh*d)
        e = k.sub_(top[:, None]).exp_()  # (B, N, nh*d); in place: linear saves no output
        e_mem = (mem_k - top[:, None]).exp()  # (B, m, nh*d)
        z = e.sum(dim=1) + e_mem.sum(dim=1)  # (B, nh*d)
        # All head pairs at once, sum_n e[n, i] v[n, j] = ((xn^T e)^T W_v^T)[i, j]; then keep
        # each head's own (d, d) block.
        pairs = (xn.mT @ e).mT @ w_v.T + e_mem.mT @ mem_v  # (B, nh*d, nh*d)
        pairs = pairs / z[:, :, None]
        context = pairs.view(b, nh, d, nh, d).diagonal(0, 1, 3)  # (B, d, e, nh)
        # out[n, c] = sum_{h,d,e} q[n,h,d] context[h,d,e] W[c,h,e] d^-0.5: fold W into context.
        w_out = self.to_out.weight.view(c, nh, d)  # (C, nh, e)
        proj = torch.einsum("bdeh,che->bhdc", context, w_out) * d**-0.5  # (B, nh, d, C)
        y = torch.baddbmm(self.to_out.bias, q.view(b, n, hidden), proj.reshape(b, hidden, c))
        return tokens_to_image(self.out_norm(y).view(b, h, w, c))  # (B, N, C) -> (B, C, H, W)


class Attention(nn.Module):
    """Full multi-head attention over the H*W positions (Vaswani et al. 2017), with learned
    memory keys/values and a LayerNorm before it, through `F.scaled_dot_product_attention`."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, num_mem_kv: int = 4) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        hidden = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.mem_kv = nn.Parameter(torch.randn(2, heads, num_mem_kv, dim_head))
        self.to_qkv = nn.Linear(dim, 3 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        nh, d = self.heads, self.dim_head
        qkv = self.to_qkv(channel_layer_norm(self.norm, x)).view(b, h * w, 3, nh, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, N, d)
        mem_k, mem_v = self.mem_kv.unsqueeze(1).expand(-1, b, -1, -1, -1)  # 2 x (B, nh, m, d)
        k = torch.cat((mem_k, k), dim=2)  # (B, nh, m+N, d)
        v = torch.cat((mem_v, v), dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, d)
        out = out.transpose(1, 2).reshape(b, h, w, nh * d)  # (B, H, W, nh*d)
        return tokens_to_image(self.to_out(out))  # (B, C, H, W)


# Phase p of a 2x nearest upsample sees input offsets (p - 1, p) along an axis; a 3x3 kernel's
# taps (-1, 0, +1) then fall on them as (w0, w1 + w2) for p = 0 and (w0 + w1, w2) for p = 1.
_PHASE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])  # (phase, tap, 3)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 conv, computed without the upsampled image.

    Each output pixel phase (py, px) is a 2x2 conv of the input whose taps are sums of the 3x3
    taps, so one conv with 4x the output channels does the work in 16 / 36 of the multiply-adds,
    then the phases are interleaved. Same parameters and same function as upsample + conv.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.register_buffer("phase_taps", _PHASE_TAPS.clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        o = self.conv.out_channels
        taps = self.phase_taps.to(self.conv.weight.dtype)
        kernel = torch.einsum("pra,qsb,oiab->pqoirs", taps, taps, self.conv.weight)
        y = F.conv2d(x, kernel.flatten(0, 2), self.conv.bias.repeat(4), padding=1)
        y = y.permute(0, 2, 3, 1).contiguous()  # (B, H+1, W+1, 4*O) with channels (py, px, O)
        # Phase (py, px) of output pixel (i, j) is y[b, i + py, j + px, (py, px, o)]: a strided
        # view of y, so one copy interleaves the phases.
        s_b, s_h, s_w, _ = y.stride()
        out = y.as_strided((b, h, 2, w, 2, o), (s_b, s_h, s_h + 2 * o, s_w, s_w + o, 1))
        out = out.reshape(b, 2 * h, 2 * w, o)  # (B, 2H, 2W, O)
        return tokens_to_image(out)  # (B, O, 2H, 2W)


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 conv as one GEMM over the channels-last pixels (the CPU conv path is slow at 1x1)."""
    weight = conv.weight.view(conv.out_channels, conv.in_channels)
    return tokens_to_image(F.linear(x.permute(0, 2, 3, 1), weight, conv.bias))


def residual_attention(attn: nn.Module, x: Tensor) -> Tensor:
    """x + attn(x); a level without attention (nn.Identity) passes x through."""
    return x if isinstance(attn, nn.Identity) else attn(x) + x


class LibUnet(nn.Module):
    """lucidrains' denoising-diffusion-pytorch `Unet` design, in this package's own code.

    A 7x7 stem; per level two ResNet blocks and a residual attention (linear at the high
    resolutions, full at the lowest), then a 2x downsample (pixel-unshuffle + 1x1 conv, written
    as the equivalent 2x2 stride-2 conv); full attention between two ResNet blocks in the
    middle; the mirror path up with skip connections from every block and nearest-neighbour 2x
    upsampling + 3x3 conv; a final ResNet block on the stem's features and a 1x1 conv out.

    `blocks` sets the ResNet blocks per level (lucidrains: 2) and `attn_from_level` the first
    level with attention (0: every level, lucidrains'), both to shape a small U-Net for speed.

    The defaults (dim 64, mults (1, 2, 4, 8), 4 heads of 32) give the parameter count of
    lucidrains' `Unet(dim=64, dim_mults=(1, 2, 4, 8))` within 0.1%. Where lucidrains' 2.x
    normalises with RMSNorm, this uses GroupNorm(8) in the ResNet blocks (his 1.x design) and
    LayerNorm over channels around attention (one fused kernel, 3x cheaper on CPU).

    With `channels_last` (the default) activations and conv weights are kept in channels-last
    memory, which the CPU and GPU convolution kernels prefer; the output is a contiguous
    (B, C, H, W) tensor either way.

    With `fp32_if_bf16_emulated` (the default), bfloat16 CPU autocast is switched off inside the
    network on CPUs without AVX512-BF16 or AMX: there oneDNN emulates bfloat16, and convolutions
    run 3-4x slower than in float32. The network then computes in float32 and returns float32.
    Elsewhere (GPUs, CPUs with bfloat16 units) autocast applies as usual.
    """

    def __init__(
        self,
        image_size: int = 128,
        channels: int = 3,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        attn_heads: int = 4,
        attn_dim_head: int = 32,
        full_attn_at_bottleneck: bool = True,
        groups: int = 8,
        dropout: float = 0.0,
        channels_last: bool = True,
        fp32_if_bf16_emulated: bool = True,
        blocks: int = 2,
        attn_from_level: int = 0,
    ) -> None:
        """Long on purpose: it reads top to bottom as the network's diagram (the down levels,
        the middle, the up levels), the order of the state_dict keys checkpoints hold."""
        super().__init__()
        if blocks < 1 or not 0 <= attn_from_level <= len(dim_mults):
            raise ConfigError(
                f"LibUnet blocks={blocks} must be >= 1 and attn_from_level={attn_from_level} "
                f"between 0 and len(dim_mults)={len(dim_mults)}."
            )
        self.factor = 2 ** (len(dim_mults) - 1)
        check_image_size("LibUnet", image_size, multiple_of=self.factor)
        self.image_size, self.channels, self.channels_last = image_size, channels, channels_last
        self.fp32_if_bf16_emulated = fp32_if_bf16_emulated
        dims = [dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        n = len(in_out)
        time_dim = dim * 4

        def res(d_in: int, d_out: int) -> ResnetBlock:
            return ResnetBlock(d_in, d_out, time_dim, groups, dropout)

        def attn(width: int, level: int) -> nn.Module:
            if level < attn_from_level:
                return nn.Identity()  # no attention at this resolution
            full = full_attn_at_bottleneck and level == n - 1
            return (Attention if full else LinearAttention)(width, attn_heads, attn_dim_head)

        def down(d_in: int, d_out: int, level: int) -> nn.Module:
            last = level == n - 1  # the bottleneck keeps its resolution
            return nn.Conv2d(d_in, d_out, 3, padding=1) if last else nn.Conv2d(d_in, d_out, 2, 2)

        def up(d_out: int, d_in: int, level: int) -> nn.Module:
            first = level == 0
            return nn.Conv2d(d_out, d_in, 3, padding=1) if first else Upsample(d_out, d_in)

        self.init_conv = nn.Conv2d(channels, dim, 7, padding=3)
        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(dim),
            nn.Linear(dim, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.downs = nn.ModuleList(
            nn.ModuleList(
                [*(res(d_in, d_in) for _ in range(blocks)), attn(d_in, i), down(d_in, d_out, i)]
            )
            for i, (d_in, d_out) in enumerate(in_out)
        )
        self.mid_block1 = res(dims[-1], dims[-1])
        self.mid_attn = Attention(dims[-1], attn_heads, attn_dim_head)
        self.mid_block2 = res(dims[-1], dims[-1])
        self.ups = nn.ModuleList(
            nn.ModuleList(
                [
                    *(res(d_out + d_in, d_out) for _ in range(blocks)),
                    attn(d_out, i),
                    up(d_out, d_in, i),
                ]
            )
            for i, (d_in, d_out) in reversed(list(enumerate(in_out)))
        )
        self.final_res_block = res(dim * 2, dim)
        self.final_conv = nn.Conv2d(dim, channels, 1)
        if channels_last:  # conv weights too, or every conv call reorders them
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        check_input("LibUnet", x, self.factor)
        if self.fp32_if_bf16_emulated and emulated_bf16_autocast(x):
            with torch.autocast("cpu", enabled=False):
                return self._forward(x.float(), t)
        return self._forward(x, t)

    def _forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.init_conv(x)
        r = x
        t_act = F.silu(self.time_mlp(t))  # every ResNet block's time MLP starts with SiLU
        skips = []
        for *blocks, attn, down in self.downs:
            for i, block in enumerate(blocks):
                x = block(x, t_act)
                if i == len(blocks) - 1:
                    x = residual_attention(attn, x)
                skips.append(x)
            x = down(x)
        x = self.mid_block1(x, t_act)
        x = self.mid_attn(x) + x
        x = self.mid_block2(x, t_act)
        for *blocks, attn, up in self.ups:
            for block in blocks:
                x = block(torch.cat((x, skips.pop()), dim=1), t_act)
            x = up(residual_attention(attn, x))
        x = self.final_res_block(torch.cat((x, r), dim=1), t_act)
        return pointwise(self.final_conv, x).contiguous()  # (B, C, H, W) in the default layout
