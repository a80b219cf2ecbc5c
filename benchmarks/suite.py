"""The trained suite: the real layouts of `architectures.py`, trained on the shipped photos.

Random weights say little about INT8 (their activations are nothing a trained model produces),
and nobody can see what quantisation did to a grid of noise. Each layout here trains for a few
minutes on 2 CPU cores on crops of the training photos (gencompress.photos.TRAIN; fully
convolutional nets train on small crops and run at full size) and is judged on the held-out
photos, which no model trains on:

| name | layout | task | judged by |
|---|---|---|---|
| sr_compact | SRVGGNetCompact x4 | bicubic-downscaled -> original | PSNR, and bicubic's PSNR |
| taesd | AutoencoderTiny, released config | autoencoder (L1 + MSE) | reconstruction PSNR |
| unet_pix2pix | pix2pix unet_256 | Gaussian noise (sigma 0.2) -> clean, L1 | PSNR, and the noisy input's |
| sd_vae | AutoencoderKL, architectures' width | VAE: L1 + small-weight KL | reconstruction PSNR |
| stylegan2 | architectures.stylegan2_like | non-saturating GAN on digits | digits FID, at init and trained |

Weights live in `<name>-photos-s<steps>-seed<seed>-v<VERSION>/weights.safetensors` with their
SHA-256 beside them (`weights.sha256`): shipped inside the package (train/weights/) when the
file is under SHIP_LIMIT bytes, else trained on first use into the cache. A copy whose hash does
not match is never loaded (the shipped one is then ignored, a cached one retrained).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gencompress import photos
from gencompress.atomic import atomic_write_bytes, atomic_write_text
from gencompress.bundle import sha256
from gencompress.cache import cache_dir
from gencompress.errors import GencompressError
from gencompress.loading import TRAINED_WEIGHTS_ATTR
from gencompress.metrics import psnr
from gencompress.progress import bar
from gencompress.train.pretrained import PACKAGED_DIR

from . import architectures as arch

VERSION = 1
SHIP_LIMIT = 10 << 20  # weights files up to 10 MiB ship in the package; bigger ones train on first use
JUDGE_SIZE = 256  # held-out crops are judged at the layouts' full output size
JUDGE_PER_SIDE = 2  # 2 x 2 crops per held-out photo: 16 in all
NOISE_SIGMA = 0.2  # the U-Net's denoising task, on the [0, 1] scale


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


# --- the trainable modules: what is saved; `deploy` takes the generator out of it ----------


class TinyAutoencoder(nn.Module):
    """diffusers AutoencoderTiny (TAESD) with its released config; images in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.vae = arch._diffusers().AutoencoderTiny()
        # PyTorch's default initialisation shrinks the signal through the ReLU stacks (latents of
        # spread 0.04, a constant image) and training stalls at the mean colour: LSUV first, as
        # architectures does for the random-weight layouts (2x - 1 of a spread 0.25: images of 0.5)
        arch.lsuv_(self, torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1, image_std=0.25)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decoder(self.encode(x))

    def decoder(self) -> nn.Module:
        return arch.LatentToImage(self.vae.decoder)


class KLAutoencoder(nn.Module):
    """diffusers AutoencoderKL at architectures.sd_vae_decoder's width; images in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.vae = arch.sd_vae_autoencoder()

    def posterior(self, x: torch.Tensor):
        return self.vae.encode(x).latent_dist

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x).mode()  # the posterior mean: the latent a user's pipeline decodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.encode(x)).sample

    def decoder(self) -> nn.Module:
        return arch.LatentToImage(self.vae.decoder, self.vae.post_quant_conv)


class DigitsCritic(nn.Module):
    """The StyleGAN2 layout's discriminator: a small DCGAN critic on 3 x 32 x 32 (the generator's
    128 px output average-pooled to the digits' 32 px), so the critic costs little beside it."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width * 2, width * 4, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(width * 4 * 16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = arch.stylegan2_like()
        self.critic = DigitsCritic()


def _sr_start() -> nn.Module:
    """The SR layout as architectures builds it, its last conv scaled by 0.1: the random residual
    (spread 0.5 after LSUV) would otherwise bury the nearest-upsampled input the net starts from."""
    model = arch.sr_compact()
    with torch.no_grad():
        model.body[-1].weight.mul_(0.1)
        model.body[-1].bias.mul_(0.1)
    return model


# --- losses ---------------------------------------------------------------------------------


def _bicubic_down(hr: torch.Tensor, factor: int = 4) -> torch.Tensor:
    return F.interpolate(hr, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def _sr_loss(model: nn.Module, crops: torch.Tensor, _gen) -> torch.Tensor:
    return F.l1_loss(model(_bicubic_down(crops)), crops)


def _autoencoder_loss(model: nn.Module, crops: torch.Tensor, _gen) -> torch.Tensor:
    x = crops * 2 - 1
    out = model(x)
    return F.l1_loss(out, x) + F.mse_loss(out, x)


KL_WEIGHT = 1e-4  # per latent element, against an L1 per pixel: a small weight keeps detail (SD's VAE uses 1e-6 on sums)


def _vae_loss(model: KLAutoencoder, crops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = crops * 2 - 1
    post = model.posterior(x)
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
    out = model.vae.decode(z).sample
    return F.l1_loss(out, x) + KL_WEIGHT * post.kl().mean() / post.mean[0].numel()


def _noisy(clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return clean + NOISE_SIGMA * torch.randn(clean.shape, generator=gen)


def _denoise_loss(model: nn.Module, crops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return F.l1_loss(model(_noisy(crops, gen) * 2 - 1), crops * 2 - 1)


# --- judging on the held-out photos -----------------------------------------------------------


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 4) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def _judge_sr(model: nn.Module) -> dict:
    hr = photos.held_out_crops(JUDGE_SIZE, JUDGE_PER_SIDE)
    lr = _bicubic_down(hr)
    sr = _batched(model, lr).clamp(0, 1)
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    return {"psnr_db": psnr(hr, sr, 1.0), "bicubic_psnr_db": psnr(hr, bicubic, 1.0), "crops": len(hr)}


def _judge_autoencoder(model: nn.Module) -> dict:
    x = photos.held_out_crops(JUDGE_SIZE, JUDGE_PER_SIDE) * 2 - 1
    out = _batched(model, x).clamp(-1, 1)
    return {"reconstruction_psnr_db": psnr(x, out, 2.0), "crops": len(x)}


def _judge_denoise(model: nn.Module) -> dict:
    clean = photos.held_out_crops(JUDGE_SIZE, JUDGE_PER_SIDE)
    noisy = _noisy(clean, torch.Generator().manual_seed(1234))
    out = (_batched(model, noisy * 2 - 1).clamp(-1, 1) + 1) / 2
    return {"psnr_db": psnr(clean, out, 1.0), "noisy_input_psnr_db": psnr(clean, noisy.clamp(0, 1), 1.0),
            "noise_sigma": NOISE_SIGMA, "crops": len(clean)}


FID_SAMPLES = 128


def _digits_real() -> torch.Tensor:
    from gencompress.data import load_digits

    images, _ = load_digits(32)
    return images.repeat(1, 3, 1, 1)


def _fid(generator: nn.Module) -> float:
    """Digits FID of `FID_SAMPLES` generated images (grey, 32 px) against all 1797 digits, with
    the shipped digits classifier's features (gencompress.fid)."""
    from gencompress import fid

    extractor = fid.digits_extractor()
    real_feats, _ = extractor.extract(_digits_real()[:, :1])
    z = torch.randn(FID_SAMPLES, generator.z_dim, generator=torch.Generator().manual_seed(4321))
    fake = _batched(lambda b: F.avg_pool2d(generator(b), 4).mean(1, keepdim=True), z, batch=16).clamp(-1, 1)
    return fid.quality(extractor, real_feats, fake)["fid"]


def _judge_gan(model: GAN) -> dict:
    return {"fid": _fid(model.generator.eval()), "fid_samples": FID_SAMPLES, "extractor": "digits-classifier"}


# --- the recipes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    build: Callable[[], nn.Module]  # the trainable module, freshly initialised
    deploy: Callable[[nn.Module], nn.Module]  # the generator inside it (input -> image)
    judge: Callable[[nn.Module], dict]
    steps: int
    batch: int
    crop: int  # side of the training crops (the model's output side)
    lr: float
    loss: Callable | None = None  # supervised recipes: loss(model, crops in [0, 1], generator)
    note: str = ""


RECIPES = {r.name: r for r in (
    Recipe("sr_compact", _sr_start, lambda m: m, _judge_sr, steps=4000, batch=8, crop=64, lr=1e-3, loss=_sr_loss,
           note="x4 SR on bicubic-downscaled (antialiased) crops, L1; inputs and outputs in [0, 1]"),
    Recipe("taesd", TinyAutoencoder, lambda m: m.decoder(), _judge_autoencoder, steps=3000, batch=4, crop=48, lr=5e-4,
           loss=_autoencoder_loss, note="autoencoder, L1 + MSE; images in [-1, 1]; latents from the trained encoder"),
    Recipe("unet_pix2pix", arch.unet_pix2pix, lambda m: m, _judge_denoise, steps=150, batch=1, crop=256, lr=5e-4,
           loss=_denoise_loss, note=f"denoising (Gaussian sigma {NOISE_SIGMA} on [0, 1]), L1, batch 1 as pix2pix; images in [-1, 1]"),
    Recipe("sd_vae", KLAutoencoder, lambda m: m.decoder(), _judge_autoencoder, steps=800, batch=4, crop=48, lr=5e-4,
           loss=_vae_loss, note=f"VAE: L1 + {KL_WEIGHT} x KL per latent element; images in [-1, 1]; latents = posterior means"),
    Recipe("stylegan2", GAN, lambda m: m.generator, _judge_gan, steps=250, batch=4, crop=32, lr=1e-3,
           note="non-saturating GAN on digits (3 x 32 x 32 critic on the 128 px output pooled x4); Adam betas (0, 0.99)"),
)}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise GencompressError(f"no trained-suite model {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


# --- training -----------------------------------------------------------------------------------


def _train_supervised(model: nn.Module, r: Recipe, steps: int, gen: torch.Generator, progress: bool) -> list[float]:
    train_photos = photos.load_split("train")
    opt = torch.optim.Adam(model.parameters(), r.lr)
    losses = []
    model.train()
    for _ in bar(range(steps), f"train {r.name}", progress):
        loss = r.loss(model, photos.random_crops(train_photos, r.batch, r.crop, gen), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise GencompressError(f"training {r.name} diverged (loss is not finite)")
        losses.append(loss.item())
    return losses


def _train_gan(model: GAN, r: Recipe, steps: int, gen: torch.Generator, progress: bool) -> list[float]:
    from gencompress.train.objectives import gan_d_loss, gan_g_loss

    real_all = _digits_real()
    g, d = model.generator, model.critic
    opt_g = torch.optim.Adam(g.parameters(), r.lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), r.lr, betas=(0.0, 0.99))
    losses = []
    model.train()
    for _ in bar(range(steps), f"train {r.name}", progress):
        real = real_all[torch.randint(len(real_all), (r.batch,), generator=gen)]
        fake = F.avg_pool2d(g(torch.randn(r.batch, g.z_dim, generator=gen)), 4)
        loss_d = gan_d_loss(d(real), d(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = gan_g_loss(d(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not torch.isfinite(loss_d + loss_g):
            raise GencompressError(f"training {r.name} diverged (loss is not finite)")
        losses.append(loss_g.item())
    return losses


def _curve(losses: list[float], points: int = 10) -> list[float]:
    """The mean loss over each of `points` equal stretches of training: the run's shape, compactly."""
    chunks = [losses[i * len(losses) // points:(i + 1) * len(losses) // points] for i in range(points)]
    return [round(sum(c) / len(c), 5) for c in chunks if c]


def train(name: str, steps: int | None = None, seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train one suite model from its seeded initialisation: (trainable module, training record)."""
    return train_recipe(recipe(name), steps, seed, progress)


def train_recipe(r: Recipe, steps: int | None = None, seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    steps = r.steps if steps is None else steps
    torch.manual_seed(seed)
    model = _seeded(r.build, seed)
    gen = torch.Generator().manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    fit = _train_gan if r.loss is None else _train_supervised
    losses = fit(model, r, steps, gen, progress)
    record = {"steps": steps, "seed": seed, "batch": r.batch, "crop": r.crop, "lr": r.lr, "task": r.note,
              "train_seconds": round(time.perf_counter() - start, 1),
              "train_cpu_seconds": round(time.process_time() - cpu_start, 1), "threads": torch.get_num_threads(),
              "loss_curve": _curve(losses)}
    return model.eval(), record


# --- storing, shipping, loading -----------------------------------------------------------------


def folder_name(name: str, steps: int | None = None, seed: int = 0) -> str:
    return f"{name}-photos-s{recipe(name).steps if steps is None else steps}-seed{seed}-v{VERSION}"


def packaged_path(name: str) -> Path:
    return PACKAGED_DIR / folder_name(name) / "weights.safetensors"


def cached_path(name: str, steps: int | None = None, seed: int = 0) -> Path:
    return cache_dir() / "suite" / folder_name(name, steps, seed) / "weights.safetensors"


def _state_to_save(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.generator.state_dict() if name == "stylegan2" else model.state_dict()  # the critic is not needed after training
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_weights(name: str, model: nn.Module, path: Path) -> Path:
    """weights.safetensors and its SHA-256 (written last: a killed write leaves no valid pair)."""
    from safetensors.torch import save

    atomic_write_bytes(path, save(_state_to_save(name, model)))
    atomic_write_text(path.with_suffix(".sha256"), f"{sha256(path)}  {path.name}\n")
    return path


def _verified_state(path: Path) -> dict[str, torch.Tensor] | None:
    """The state at `path` if it and its SHA-256 are there and agree, else None (never trusted)."""
    from safetensors.torch import load_file

    digest = path.with_suffix(".sha256")
    if not (path.is_file() and digest.is_file()):
        return None
    if digest.read_text().split()[:1] != [sha256(path)]:
        print(f"gencompress: {path} does not match its SHA-256; not loading it", file=sys.stderr)
        return None
    return load_file(str(path))


def _load_into(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    model = _seeded(recipe(name).build, 0)
    (model.generator if name == "stylegan2" else model).load_state_dict(state)
    return model.eval()


def trained(name: str, progress: bool = True) -> nn.Module:
    """The trainable module of suite model `name`, trained: shipped, cached, or trained now and cached."""
    state = _verified_state(packaged_path(name)) or _verified_state(cached_path(name))
    if state is None:
        path = cached_path(name)
        print(f"gencompress: training the suite's {name} on the shipped photos ({recipe(name).steps} steps; cached in {path.parent})",
              file=sys.stderr)
        model, _ = train(name, progress=progress)
        save_weights(name, model, path)
        return model
    return _load_into(name, state)


def generator(name: str) -> nn.Module:
    """The deployable generator of a trained suite model (what `--model ...:NAME_trained` builds);
    it names its weights, so a build records them instead of warning about random weights."""
    model = recipe(name).deploy(trained(name)).eval()
    setattr(model, TRAINED_WEIGHTS_ATTR, f"gencompress.benchmarks.suite {folder_name(name)} (trained on the shipped photos)")
    return model


def held_out_latents(name: str, size: int = JUDGE_SIZE, per_side: int = 3) -> torch.Tensor:
    """Latents of the held-out crops through the trained encoder (taesd or sd_vae): what its decoder takes."""
    if name not in ("taesd", "sd_vae"):
        raise GencompressError(f"{name!r} has no encoder; latents come from 'taesd' or 'sd_vae'")
    model = trained(name)
    return _batched(model.encode, photos.held_out_crops(size, per_side) * 2 - 1)


def photo_inputs(name: str, n: int, seed: int, size: int = JUDGE_SIZE, split: str = "held_out") -> torch.Tensor:
    """`n` real inputs of suite model `name`'s generator from seeded random `size`-px crops of the
    photos of `split`: low-resolution crops for the SR net (size / 4, [0, 1]), noisy crops for the
    denoising U-Net ([-1, 1]), latents through the trained encoder for the decoders; Gaussian
    latents for the GAN. The layouts are fully convolutional except the U-Net (256 px) and the GAN."""
    gen = torch.Generator().manual_seed(seed)
    if name == "stylegan2":
        return torch.randn(n, trained(name).generator.z_dim, generator=gen)
    pool = photos.load_split(split)
    if name == "sr_compact":
        return photos.random_crops(pool, n, size // 4, gen)
    crops = photos.random_crops(pool, n, size, gen)
    if name == "unet_pix2pix":
        return _noisy(crops, gen).clamp(0, 1) * 2 - 1
    return _batched(trained(name).encode, crops * 2 - 1)


def judge(name: str, model: nn.Module) -> dict:
    return recipe(name).judge(model)


def ships(path: Path) -> bool:
    return path.stat().st_size <= SHIP_LIMIT


# --- the same layouts trained on the shipped photos (this module) ----------
# sr_compact and taesd ship trained inside the package; the others train on first use (a few
# minutes) and are cached. The decoders take latents of photos through their trained encoder:
# `python scripts/train_suite.py latents taesd OUT.npz` writes those of the held-out photos.


def sr_compact_trained() -> nn.Module:
    """architectures.sr_compact trained x4 on bicubic-downscaled photo crops; inputs and outputs in [0, 1]."""
    return generator("sr_compact")


def taesd_decoder_trained() -> nn.Module:
    """The TAESD decoder of an AutoencoderTiny (released config) trained on photos; images in [-1, 1]."""
    return generator("taesd")


def sd_vae_decoder_trained() -> nn.Module:
    """architectures.sd_vae_decoder's layout, decoder of a VAE trained on photos; images in [-1, 1]."""
    return generator("sd_vae")


def unet_pix2pix_trained() -> nn.Module:
    """unet_pix2pix trained to denoise photos (Gaussian sigma 0.2 on [0, 1]); images in [-1, 1]."""
    return generator("unet_pix2pix")


def stylegan2_like_trained() -> nn.Module:
    """stylegan2_like after a short GAN run on digits (grey digits, 128 px)."""
    return generator("stylegan2")


# trained entry point -> (its layout in architectures.FULL_INPUT_SHAPES, its name in the suite)
TRAINED = {"sr_compact_trained": ("sr_compact", "sr_compact"), "taesd_decoder_trained": ("taesd_decoder", "taesd"),
           "sd_vae_decoder_trained": ("sd_vae_decoder", "sd_vae"), "unet_pix2pix_trained": ("unet_pix2pix", "unet_pix2pix"),
           "stylegan2_like_trained": ("stylegan2_like", "stylegan2")}
