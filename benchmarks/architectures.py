"""Real generator architectures, built from a config with random weights (nothing downloaded).

Each builder is a callable usable as `--model gencompress.benchmarks.architectures:NAME`
(an import spec calls it with no arguments, so NAME gives the full size and NAME_small a
narrow one for tests); its keyword arguments set width and size. Every model's forward is
`input tensor -> image tensor` (N x 3 x H x W), so the pipeline treats them like any
generator:

| name | layout | input -> output (full size) |
|---|---|---|
| sd_vae_decoder | diffusers AutoencoderKL decoder: GroupNorm 32, SiLU, mid-block attention, nearest upsampling | 4x32x32 -> 3x256x256 |
| taesd_decoder | diffusers AutoencoderTiny decoder (TAESD): ReLU residual blocks, nearest upsampling | 4x32x32 -> 3x256x256 |
| sr_compact | Real-ESRGAN's SRVGGNetCompact: PReLU, PixelShuffle, nearest-upsampled residual | 3x64x64 -> 3x256x256 |
| unet_pix2pix | pix2pix U-Net: strided convs, skip concatenations, ConvTranspose, BatchNorm | 3x256x256 -> 3x256x256 |
| stylegan2_like | mapping MLP, modulated + demodulated convs with per-sample weights, noise inputs | 512 -> 3x128x128 |

Random weights are scaled layer by layer so each layer's output has unit spread (LSUV,
Mishkin & Matas 2016) and the image has a spread of 0.5: with PyTorch's default
initialisation, deep residual decoders output a near-constant image, and quantisation
error on a constant image says nothing. Weights are seeded, so a bundle rebuilds the same
architecture and loads its saved weights over it.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gencompress.errors import MissingDependencyError

# Per-sample input shapes (for --input-shape, tests and scripts/real_architectures.py).
FULL_INPUT_SHAPES = {
    "sd_vae_decoder": (4, 32, 32),
    "taesd_decoder": (4, 32, 32),
    "sr_compact": (3, 64, 64),
    "unet_pix2pix": (3, 256, 256),
    "stylegan2_like": (512,),
}
SMALL_INPUT_SHAPES = {
    "sd_vae_decoder": (4, 8, 8),
    "taesd_decoder": (4, 4, 4),
    "sr_compact": (3, 8, 8),
    "unet_pix2pix": (3, 32, 32),
    "stylegan2_like": (32,),
}


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise MissingDependencyError("the diffusers decoders need diffusers: pip install 'gencompress[dev]' (or pip install diffusers)") from None
    return diffusers


class LatentToImage(nn.Module):
    """A diffusers decoder as `latent -> image` (a tensor, not a dataclass)."""

    def __init__(self, decoder: nn.Module, post_quant_conv: nn.Module | None = None):
        super().__init__()
        self.post_quant_conv = post_quant_conv if post_quant_conv is not None else nn.Identity()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


# --- initialisation ---------------------------------------------------------------------


def lsuv_(model: nn.Module, x: torch.Tensor, image_std: float = 0.5) -> nn.Module:
    """Scale each Conv/ConvTranspose/Linear so its output spread is 1 (the last one's: `image_std`).

    One forward pass does it: each layer's hook rescales the layer's weight and bias and the
    output it has just produced by the same factor (output = W x + b is linear in (W, b)), so
    every later layer already sees the corrected activations, as in sequential LSUV.
    """
    model.eval()
    done: list[nn.Module] = []

    def hook(layer, _inputs, out):
        if layer in done:  # a layer called twice keeps its first scale
            return None
        done.append(layer)
        spread = float(out.float().std())
        if not spread > 0 or not math.isfinite(spread):
            return None
        scale = 1.0 / spread
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.mul_(scale)
        return out * scale

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    if done:  # the image layer: its own spread
        last = done[-1]
        with torch.no_grad():
            last.weight.mul_(image_std)
            if last.bias is not None:
                last.bias.mul_(image_std)
    return model


def _seeded(build, seed: int, init_input: torch.Tensor, image_std: float = 0.5) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build()
        return lsuv_(model, init_input, image_std).eval()


def _latent(channels: int, size: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))


# --- SD-VAE decoder (diffusers AutoencoderKL) ------------------------------------------


def sd_vae_decoder(block_out_channels: tuple[int, ...] = (32, 64, 128, 128), layers_per_block: int = 2,
                   norm_num_groups: int = 32, latent_channels: int = 4, seed: int = 0) -> nn.Module:
    """SD's VAE decoder layout (post_quant_conv + Decoder). SD 1.x uses widths (128, 256, 512, 512):
    310 GMAC per 256x256 image, hours of calibration on 2 cores; the default here keeps every layer
    type and the depth at a quarter of the width (1/16 of the MACs)."""

    def build():
        vae = sd_vae_autoencoder(block_out_channels, layers_per_block, norm_num_groups, latent_channels)
        return LatentToImage(vae.decoder, vae.post_quant_conv)

    return _seeded(build, seed, _latent(latent_channels, 4))


def sd_vae_autoencoder(block_out_channels: tuple[int, ...] = (32, 64, 128, 128), layers_per_block: int = 2,
                       norm_num_groups: int = 32, latent_channels: int = 4) -> nn.Module:
    """The whole AutoencoderKL (encoder too) that sd_vae_decoder takes its decoder from, with
    diffusers' own initialisation (the trained suite, gencompress.benchmarks.suite, trains it)."""
    return _diffusers().AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups, act_fn="silu", mid_block_add_attention=True,
    )


def sd_vae_decoder_small() -> nn.Module:
    return sd_vae_decoder(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


# --- TAESD decoder (diffusers AutoencoderTiny) -------------------------------------------


def taesd_decoder(width: int = 64, blocks: tuple[int, ...] = (3, 3, 3, 1), latent_channels: int = 4, seed: int = 0) -> nn.Module:
    """TAESD's decoder: 4x32x32 -> 3x256x256 at width 64 (the released size, ~17.7 GMAC)."""
    diffusers = _diffusers()

    def build():
        tiny = diffusers.AutoencoderTiny(decoder_block_out_channels=(width,) * len(blocks), num_decoder_blocks=tuple(blocks),
                                         encoder_block_out_channels=(width,) * len(blocks), num_encoder_blocks=(1,) * len(blocks),
                                         latent_channels=latent_channels)
        return LatentToImage(tiny.decoder)

    # DecoderTiny maps its last conv's output x to 2x - 1: a spread of 0.25 gives images of spread 0.5
    return _seeded(build, seed, _latent(latent_channels, 4), image_std=0.25)


def taesd_decoder_small() -> nn.Module:
    return taesd_decoder(width=16, blocks=(1, 1, 1, 1))


# --- Real-ESRGAN compact SR --------------------------------------------------------------


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact SR net: conv + PReLU body, PixelShuffle, plus the nearest-upsampled input."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, num_feat: int = 64, num_conv: int = 16, upscale: int = 4):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(in_ch, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsampler(self.body(x))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def sr_compact(num_feat: int = 64, num_conv: int = 16, upscale: int = 4, seed: int = 0) -> nn.Module:
    """realesr-general-x4v3's layout: 3x64x64 -> 3x256x256, ~2.5 GMAC."""
    return _seeded(lambda: SRVGGNetCompact(num_feat=num_feat, num_conv=num_conv, upscale=upscale), seed, _latent(3, 16))


def sr_compact_small() -> nn.Module:
    return sr_compact(num_feat=16, num_conv=2, upscale=2)


# --- pix2pix U-Net -------------------------------------------------------------------------


class UnetBlock(nn.Module):
    """pix2pix's UnetSkipConnectionBlock: down, the inner block, up, then concatenate the input."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None = None, in_ch: int | None = None,
                 outermost: bool = False, innermost: bool = False):
        super().__init__()
        in_ch = outer if in_ch is None else in_ch
        self.outermost = outermost
        down = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            seq = [down, sub, nn.ReLU(), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False)
            seq = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, nn.BatchNorm2d(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False)
            seq = [nn.LeakyReLU(0.2), down, nn.BatchNorm2d(inner), sub, nn.ReLU(), up, nn.BatchNorm2d(outer)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def unet_pix2pix(ngf: int = 64, num_downs: int = 8, channels: int = 3, seed: int = 0) -> nn.Module:
    """pix2pix's `unet_256` (ngf 64, 8 downsamplings): 3x256x256 -> 3x256x256, 6.05 GMAC (count_macs), 54M parameters."""

    def build():
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, block)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, block)
        return UnetBlock(channels, ngf, block, in_ch=channels, outermost=True)

    side = 2 ** num_downs
    return _seeded(build, seed, torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(1)))


def unet_pix2pix_small() -> nn.Module:
    return unet_pix2pix(ngf=16, num_downs=5)


# --- StyleGAN2-like generator -------------------------------------------------------------


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: the style scales the weight per sample, demodulation
    renormalises it, and the batch runs as one grouped convolution (one group per sample)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, kernel: int = 3, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = nn.Linear(w_dim, in_ch)
        nn.init.ones_(self.affine.bias)  # styles start at 1, as in StyleGAN2
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, wd = x.shape
        style = self.affine(w)  # N x in_ch
        weight = self.weight[None] * style[:, None, :, None, None] / math.sqrt(c * self.weight[0, 0].numel())
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            h, wd = h * 2, wd * 2
        out = F.conv2d(x.reshape(1, n * c, h, wd), weight.reshape(-1, c, *weight.shape[3:]), padding=self.padding, groups=n)
        return out.reshape(n, -1, h, wd)


class StyledLayer(nn.Module):
    """Modulated conv, a noise input (a fixed buffer, StyleGAN2's `noise_mode='const'`, so outputs
    are reproducible), a bias and leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, w_dim, upsample=upsample)
        self.register_buffer("noise", torch.randn(1, 1, resolution, resolution))
        self.noise_strength = nn.Parameter(torch.full((), 0.1))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) + self.noise * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class StyleGAN2Like(nn.Module):
    def __init__(self, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8, resolution: int = 128,
                 channels: dict[int, int] | None = None):
        super().__init__()
        self.z_dim = z_dim
        mapping: list[nn.Module] = []
        for i in range(mapping_layers):
            mapping += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        res_list = [4 * 2**i for i in range(int(math.log2(resolution // 4)) + 1)]
        ch = channels or {r: min(512, 8192 // r) for r in res_list}
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.layers = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        prev = ch[4]
        for r in res_list:
            first = StyledLayer(prev, ch[r], w_dim, r, upsample=r > 4)
            self.layers.append(nn.ModuleList([first, StyledLayer(ch[r], ch[r], w_dim, r)]))
            self.to_rgb.append(ModulatedConv2d(ch[r], 3, w_dim, kernel=1, demodulate=False))
            prev = ch[r]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # StyleGAN's pixel norm of z
        w = self.mapping(z)
        x = self.const.repeat(len(z), 1, 1, 1)  # (expand's view under no_grad confuses FlopCounterMode)
        img = None
        for (a, b), rgb in zip(self.layers, self.to_rgb):
            x = b(a(x, w), w)
            y = rgb(x, w)
            img = y if img is None else F.interpolate(img, scale_factor=2, mode="nearest") + y  # skip generator
        return img


def stylegan2_like(z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8, resolution: int = 128,
                   channel_cap: int = 256, seed: int = 0) -> nn.Module:
    """A StyleGAN2 skip generator at 128x128 with channels capped at 256 (StyleGAN2-ADA's 'paper256'-like widths)."""
    res_list = [4 * 2**i for i in range(int(math.log2(resolution // 4)) + 1)]
    channels = {r: min(channel_cap, 8192 // r) for r in res_list}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = StyleGAN2Like(z_dim, w_dim, mapping_layers, resolution, channels)
    # No LSUV: demodulation normalises every conv; the toRGB layers (summed over the
    # resolutions) are scaled so the image has a spread of about 0.5.
    with torch.no_grad():
        for rgb in model.to_rgb:
            rgb.weight.mul_(0.5 / math.sqrt(len(model.to_rgb)))
    return model.eval()


def stylegan2_like_small() -> nn.Module:
    return stylegan2_like(z_dim=32, w_dim=32, mapping_layers=2, resolution=16, channel_cap=16)


NAMES = tuple(FULL_INPUT_SHAPES)
