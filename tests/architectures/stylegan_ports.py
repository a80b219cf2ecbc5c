"""Small re-implementations, written for these tests, of the StyleGAN2 generators users bring:
the modulated convolution as each port writes it, fused (one grouped convolution over the
batch, per-sample weights), at toy widths. Not copies: the same structure, attribute names,
layouts and arithmetic as

- rosinality/stylegan2-pytorch model.py: EqualLinear, ModulatedConv2d(fused=True) with a
  1 x O x I x k x k weight, `modulation`, `scale`, upsampling as a stride-2 transposed grouped
  convolution then Blur (upfirdn2d), NoiseInjection, ToRGB with an upsampled skip;
- NVlabs/stylegan2-ada-pytorch training/networks.py: FullyConnectedLayer, modulated_conv2d with
  fused_modconv (picked in eval at FP32 by the synthesis block), SynthesisLayer with
  noise_const / noise_mode, ToRGBLayer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter (per channel): the native upfirdn2d of both ports, 2-D, down = 1."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kh, kw = kernel.shape
    out = F.conv2d(x.reshape(-1, 1, *x.shape[2:]), torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(x.dtype))  # each channel alone
    return out.reshape(-1, c, *out.shape[2:])


def make_kernel(k) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


# --- rosinality/stylegan2-pytorch -----------------------------------------------------------


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor ** 2)
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation, self.scale, self.lr_mul = activation, (1 / math.sqrt(in_dim)) * lr_mul, lr_mul

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activation else out


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.eps, self.kernel_size, self.in_channel, self.out_channel = 1e-8, kernel_size, in_channel, out_channel
        self.upsample, self.downsample = upsample, False
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x, style):  # the fused path
        batch, in_channel, height, width = x.shape
        style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        weight = weight.view(batch * self.out_channel, in_channel, self.kernel_size, self.kernel_size)
        if self.upsample:
            x = x.view(1, batch * in_channel, height, width)
            weight = weight.view(batch, self.out_channel, in_channel, self.kernel_size, self.kernel_size)
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, self.kernel_size, self.kernel_size)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = self.blur(out.view(batch, self.out_channel, *out.shape[2:]))
        else:
            out = F.conv2d(x.view(1, batch * in_channel, height, width), weight, padding=self.padding, groups=batch)
            out = out.view(batch, self.out_channel, *out.shape[2:])
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), 0.1))

    def forward(self, image, noise=None):
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(1, out_channel, 1, 1))  # FusedLeakyReLU's bias

    def forward(self, x, style, noise=None):
        out = self.noise(self.conv(x, style), noise=noise)
        return F.leaky_relu(out + self.bias, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample((1, 3, 3, 1))
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out + self.upsample(skip) if skip is not None else out


class RosinalityGenerator(nn.Module):
    def __init__(self, size=16, style_dim=16, n_mlp=2, width=8):
        super().__init__()
        self.style = nn.Sequential(*[EqualLinear(style_dim, style_dim, lr_mul=0.01, activation="fused_lrelu") for _ in range(n_mlp)])
        self.input = nn.Parameter(torch.randn(1, width, 4, 4))  # ConstantInput
        self.conv1 = StyledConv(width, width, 3, style_dim)
        self.to_rgb1 = ToRGB(width, style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(3, self.log_size + 1):
            self.convs.append(StyledConv(width, width, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(width, width, 3, style_dim))
            self.to_rgbs.append(ToRGB(width, style_dim))
        for layer_idx in range(1 + 2 * (self.log_size - 2)):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2 ** res, 2 ** res))

    def forward(self, styles, randomize_noise=True):
        latent = self.style(styles[0])
        noise = [None] * (1 + 2 * (self.log_size - 2)) if randomize_noise else [getattr(self.noises, f"noise_{i}") for i in range(1 + 2 * (self.log_size - 2))]
        out = self.conv1(self.input.repeat(len(latent), 1, 1, 1), latent, noise=noise[0])
        skip = self.to_rgb1(out, latent)
        for i, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * i](out, latent, noise=noise[1 + 2 * i])
            out = self.convs[2 * i + 1](out, latent, noise=noise[2 + 2 * i])
            skip = to_rgb(out, latent, skip)
        return skip, latent


class RosinalityFromZ(nn.Module):
    """What a user hands the toolkit: z -> image, noise from the generator's buffers (randomize_noise=False)."""

    def __init__(self, g: RosinalityGenerator):
        super().__init__()
        self.g = g

    def forward(self, z):
        return self.g([z], randomize_noise=False)[0]


def _image_spread(model: nn.Module, rgb_weights: list[torch.Tensor], z_dim: int = 16) -> nn.Module:
    """The toRGB weights scaled so the image has a spread of about 0.5 (as architectures.stylegan2_like):
    random weights otherwise give an image of spread ~2, beyond the [-1, 1] a generator's output spans."""
    with torch.no_grad():
        spread = float(model(torch.randn(64, z_dim, generator=torch.Generator().manual_seed(1))).std())
        for w in rgb_weights:
            w.mul_(0.5 / spread)
    return model


def rosinality_small() -> nn.Module:
    torch.manual_seed(0)
    model = RosinalityFromZ(RosinalityGenerator()).eval()
    return _image_spread(model, [model.g.to_rgb1.conv.weight, *(t.conv.weight for t in model.g.to_rgbs)])


# --- NVlabs/stylegan2-ada-pytorch -------------------------------------------------------------


def bias_act(x, b, act="linear", gain=None, clamp=None):
    x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2) * (math.sqrt(2) if gain is None else gain)
    elif gain is not None:
        x = x * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain, self.bias_gain = lr_multiplier / math.sqrt(in_features), lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


def _conv2d_resample(x, w, f=None, up=1, padding=0, groups=1):
    """up = 1: a plain convolution; up = 2: a stride-2 transposed convolution, then the resample filter."""
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    out_ch, in_ch, kh, kw = w.shape
    w = w.reshape(groups, out_ch // groups, in_ch, kh, kw).transpose(1, 2).reshape(groups * in_ch, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)
    return upfirdn2d(x, f * up ** 2, pad=(1, 1))


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None, demodulate=True, fused_modconv=True):
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w, dcoefs = None, None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    if not fused_modconv:  # activations scaled before and after one convolution with the shared weight
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = _conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        return x.add(noise.to(x.dtype)) if noise is not None else x
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = _conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=batch_size)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    return x.add(noise) if noise is not None else x


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.register_buffer("resample_filter", make_kernel((1, 3, 3, 1)))
        self.padding, self.act_gain = kernel_size // 2, math.sqrt(2)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.full([], 0.1))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=self.act_gain * gain)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1):
        super().__init__()
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype))


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", make_kernel((1, 3, 3, 1)))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGBLayer(out_channels, 3, w_dim)

    def forward(self, x, img, w, fused_modconv=None, **layer_kwargs):
        if fused_modconv is None:  # the official default: fused in eval at FP32
            fused_modconv = not self.training
        if self.conv0 is None:
            x = self.const.unsqueeze(0).repeat([w.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, w, fused_modconv=fused_modconv, **layer_kwargs)
        x = self.conv1(x, w, fused_modconv=fused_modconv, **layer_kwargs)
        if img is not None:
            img = upfirdn2d(img, self.resample_filter * 4, up=2, pad=(2, 1))
        y = self.torgb(x, w, fused_modconv=fused_modconv)
        return x, (img + y if img is not None else y)


class NVlabsGenerator(nn.Module):
    """z -> mapping -> synthesis, as G(z, c) with c empty; noise_mode left at its default ('random'), as users call it."""

    def __init__(self, z_dim=16, w_dim=16, resolution=16, width=8):
        super().__init__()
        self.z_dim = z_dim
        self.mapping = nn.ModuleList([FullyConnectedLayer(z_dim, w_dim, activation="lrelu", lr_multiplier=0.01),
                                      FullyConnectedLayer(w_dim, w_dim, activation="lrelu", lr_multiplier=0.01)])
        res = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList([SynthesisBlock(0 if r == 4 else width, width, w_dim, r) for r in res])

    def forward(self, z, **synthesis_kwargs):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.mapping:
            x = layer(x)
        h = img = None
        for block in self.blocks:
            h, img = block(h, img, x, **synthesis_kwargs)
        return img


def nvlabs_small() -> nn.Module:
    torch.manual_seed(0)
    model = NVlabsGenerator().eval()
    return _image_spread(model, [b.torgb.weight for b in model.blocks])
