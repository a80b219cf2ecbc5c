"""The model zoo: named generator architectures in a validated registry.

Every entry builds an `nn.Module` from keyword arguments and states its input spec,
so a bundle can name `{"zoo": "dcgan", "kwargs": {...}}` and be rebuilt anywhere.
Discriminators live beside their generators because training needs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import GencompressError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[..., nn.Module]
    defaults: dict
    input_shape: Callable[[dict], tuple[int, ...]]  # per-sample input shape from kwargs
    input_distribution: str = "normal"  # how calibration and evaluation draw inputs
    description: str = ""
    discriminator: Callable[..., nn.Module] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


_ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    if not entry.name.isidentifier():
        raise ValueError(f"zoo name {entry.name!r} must be an identifier")
    if entry.name in _ZOO:
        raise ValueError(f"zoo name {entry.name!r} is already registered")
    _ZOO[entry.name] = entry
    return entry


def names() -> list[str]:
    return sorted(_ZOO)


def get(name: str) -> ZooEntry:
    try:
        return _ZOO[name]
    except KeyError:
        raise GencompressError(f"unknown zoo model {name!r}; known: {', '.join(names())}") from None


def build(name: str, **kwargs) -> nn.Module:
    entry = get(name)
    merged = {**entry.defaults, **kwargs}
    unknown = set(merged) - set(entry.defaults)
    if unknown:
        raise GencompressError(f"zoo model {name!r} takes no argument(s) {sorted(unknown)}")
    return entry.build(**merged)


def input_shape(name: str, **kwargs) -> tuple[int, ...]:
    entry = get(name)
    return entry.input_shape({**entry.defaults, **kwargs})


# --- DCGAN (Radford et al. 2016), sized for 32x32 images -------------------------------


def _dcgan_generator(nz: int, ngf: int, nc: int) -> nn.Module:
    """ConvTranspose + BatchNorm + ReLU, Tanh output: 1x1 latent -> 4 -> 8 -> 16 -> 32."""

    def up(cin: int, cout: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        *up(ngf * 4, ngf * 2),
        *up(ngf * 2, ngf),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def _dcgan_discriminator(ndf: int = 32, nc: int = 1, norm: str = "batch") -> nn.Module:
    """Strided convolutions 32 -> 16 -> 8 -> 4 -> one logit. `norm` is 'batch' or 'none'
    (WGAN-GP penalises per-sample gradients, which batch norm would couple)."""

    def down(cin: int, cout: int, normed: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not normed)]
        if normed and norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        elif normed and norm == "layer":
            layers.append(nn.GroupNorm(1, cout))
        layers.append(nn.LeakyReLU(0.2, True))
        return layers

    return nn.Sequential(
        *down(nc, ndf, False),
        *down(ndf, ndf * 2, True),
        *down(ndf * 2, ndf * 4, True),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0),
        nn.Flatten(),
    )


register(
    ZooEntry(
        name="dcgan",
        build=_dcgan_generator,
        defaults={"nz": 100, "ngf": 32, "nc": 1},
        input_shape=lambda kw: (kw["nz"], 1, 1),
        description="DCGAN generator: ConvTranspose + BatchNorm + ReLU, Tanh output, 32x32",
        discriminator=_dcgan_discriminator,
        tags=("gan", "deconv"),
    )
)


# --- Upsample + conv generator (Odena et al. 2016: no checkerboard artefacts) ------------


class _UpsampleConvGenerator(nn.Module):
    """Linear stem -> 4x4 map, then (nearest Upsample + 3x3 Conv + BN + ReLU) x 3, Tanh.

    No ConvTranspose anywhere, so every layer is a plain convolution: INT8 Conv kernels
    exist on every backend, ONNX Runtime's CPU provider included.
    """

    def __init__(self, nz: int, ngf: int, nc: int):
        super().__init__()
        self.base = ngf * 4
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(nz, self.base * 16, bias=False))
        self.stem_norm = nn.Sequential(nn.BatchNorm2d(self.base), nn.ReLU(True))

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]

        self.body = nn.Sequential(*up(ngf * 4, ngf * 2), *up(ngf * 2, ngf), *up(ngf, ngf))
        self.head = nn.Sequential(nn.Conv2d(ngf, nc, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z).unflatten(1, (-1, 4, 4))
        return self.head(self.body(self.stem_norm(x)))


register(
    ZooEntry(
        name="upsample_conv",
        build=_UpsampleConvGenerator,
        defaults={"nz": 100, "ngf": 32, "nc": 1},
        input_shape=lambda kw: (kw["nz"], 1, 1),
        description="Upsample (nearest) + Conv generator, no ConvTranspose, 32x32",
        discriminator=_dcgan_discriminator,
        tags=("gan", "conv-only"),
    )
)


# --- ResNet image-to-image generator (Johnson et al. 2016; CycleGAN, Zhu et al. 2017) ----


class _ResnetBlock(nn.Module):
    """Two 3x3 reflect-padded convs with InstanceNorm and an identity skip."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _resnet_generator(nc: int, ngf: int, n_blocks: int) -> nn.Module:
    """c7s1-ngf, d(2ngf), d(4ngf), R(4ngf) x n_blocks, u(2ngf), u(ngf), c7s1-nc + Tanh."""

    def down(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU(True)]

    def up(cin: int, cout: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(cout), nn.ReLU(True)]

    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(nc, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
        *down(ngf, ngf * 2),
        *down(ngf * 2, ngf * 4),
        *[_ResnetBlock(ngf * 4) for _ in range(n_blocks)],
        *up(ngf * 4, ngf * 2),
        *up(ngf * 2, ngf),
        nn.ReflectionPad2d(3), nn.Conv2d(ngf, nc, 7), nn.Tanh(),
    )


def _patchgan_discriminator(ndf: int = 32, nc: int = 1, norm: str = "instance") -> nn.Module:
    """70x70-PatchGAN shape, scaled to 32x32: C64-C128-C256 (halved), one logit per patch.

    Emits a (N, P) map of patch logits; losses average over patches. `norm` is 'instance'
    or 'none' (WGAN-GP) or 'layer'.
    """

    def block(cin: int, cout: int, stride: int, normed: bool) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride, 1)]
        if normed and norm in ("instance", "batch"):
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        elif normed and norm == "layer":
            layers.append(nn.GroupNorm(1, cout))
        layers.append(nn.LeakyReLU(0.2, True))
        return layers

    return nn.Sequential(
        *block(nc, ndf, 2, False),  # 32 -> 16
        *block(ndf, ndf * 2, 2, True),  # 16 -> 8
        *block(ndf * 2, ndf * 4, 1, True),  # 8 -> 7
        nn.Conv2d(ndf * 4, 1, 4, 1, 1),  # 7 -> 6: 36 patch logits
        nn.Flatten(),
    )


register(
    ZooEntry(
        name="resnet_generator",
        build=_resnet_generator,
        defaults={"nc": 1, "ngf": 16, "n_blocks": 3},
        input_shape=lambda kw: (kw["nc"], 32, 32),
        input_distribution="uniform",
        description="ResNet image-to-image generator (CycleGAN-style, InstanceNorm), 32x32 in [-1, 1]",
        discriminator=_patchgan_discriminator,
        tags=("gan", "image-to-image", "instancenorm"),
    )
)


# --- Convolutional VAE decoder (Kingma & Welling 2014) ------------------------------------


class _VAEDecoder(nn.Module):
    """z (nz,) or (nz, 1, 1) -> Linear -> 4x4 map -> ConvTranspose x 3 -> 32x32, Tanh in [-1, 1].

    The matching encoder lives in gencompress.train (it is only needed for training);
    the decoder is what gets deployed.
    """

    def __init__(self, nz: int, ngf: int, nc: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(nz, ngf * 4 * 16), nn.ReLU(True))

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.body = nn.Sequential(*up(ngf * 4, ngf * 2), *up(ngf * 2, ngf))
        self.head = nn.Sequential(nn.ConvTranspose2d(ngf, nc, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z).unflatten(1, (-1, 4, 4))
        return self.head(self.body(x))


register(
    ZooEntry(
        name="vae_decoder",
        build=_VAEDecoder,
        defaults={"nz": 16, "ngf": 32, "nc": 1},
        input_shape=lambda kw: (kw["nz"], 1, 1),
        description="Convolutional VAE decoder: Linear stem + ConvTranspose x 3, Tanh, 32x32",
        discriminator=None,
        tags=("vae", "deconv"),
    )
)
