"""Distribution quality: FID, KID and Inception Score on a feature extractor we own.

No weights are downloaded. The features come from, in order of preference:
  * `--inception-weights PATH`: a local TorchScript Inception feature extractor (for example
    NVIDIA's `inception-2015-12-05.pt` from the StyleGAN2-ADA metrics). A plain Inception-v3
    state dict is not supported: rebuilding that architecture needs torchvision.
  * digits: a small CNN classifier trained on the digits; its penultimate layer gives FID/KID
    features and its logits give the Inception Score. It ships trained (gencompress/weights/,
    written by scripts/package_default_weights.py, hash-checked on load), so every machine
    scores with the same weights; where the shipped copy is missing or damaged it is trained
    once (about 10 s) and cached.
  * other data (a folder, an npz): a small convolutional autoencoder trained on the data
    and cached; its bottleneck gives FID/KID features (no Inception Score: no labels).
Numbers from different extractors are not comparable; every result names its extractor.

The metric arithmetic is torchmetrics' (FrechetInceptionDistance, KernelInceptionDistance,
InceptionScore). We hand them precomputed features through an identity "feature" module,
so real-data features are extracted once and cached (keyed by data, extractor and version).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from .atomic import atomic_write_bytes
from .cache import cache_dir
from .errors import GencompressError, first_line

CACHE_VERSION = 3  # 3: extractors' initial weights seeded too (before, they followed the caller's RNG state)
FEATURE_DIM = 64
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"  # extractors that ship trained: NAME-vN.safetensors + .sha256


class _Trunk(nn.Module):
    """32x32 images in [-1, 1] -> FEATURE_DIM features.

    Average-pooled to 16x16 first: the digits are 8x8 upscaled, so nothing is lost there,
    and it makes training the extractor on first use about ten times cheaper on a CPU.
    """

    def __init__(self, nc: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(2),  # 16
            nn.Conv2d(nc, 32, 3, 2, 1), nn.ReLU(True),  # 8
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(True),  # 4
            nn.Flatten(), nn.Linear(64 * 16, FEATURE_DIM), nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Identity(nn.Module):
    """What torchmetrics calls the 'feature' module: our features pass straight through."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class Extractor:
    name: str  # recorded with every number: FIDs on different extractors do not compare
    features: nn.Module  # images (N, C, 32, 32) in [-1, 1] -> (N, D)
    logits: nn.Module | None = None  # images -> class logits (Inception Score), if labelled
    # Our small nets' features have arbitrary scale; on the sphere of radius sqrt(D) KID's
    # cubic kernel (x.y / D + 1)^3 sees inner products of order one, as with Inception's.
    sphere: bool = True

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, logits = [], []
        for chunk in images.split(batch):
            f = self.features(chunk).double()
            feats.append(F.normalize(f, dim=1) * f.shape[1] ** 0.5 if self.sphere else f)
            if self.logits is not None:
                logits.append(self.logits(chunk).double())
        return torch.cat(feats), (torch.cat(logits) if logits else None)


# --- extractors ----------------------------------------------------------------------


def shipped_path(name: str) -> Path:
    return SHIPPED_DIR / f"{name}-v{CACHE_VERSION}.safetensors"


def _shipped_state(name: str) -> dict[str, torch.Tensor] | None:
    """The weights that ship with the package, where their file matches its recorded hash."""
    from safetensors.torch import load_file

    from .bundle import sha256

    path = shipped_path(name)
    recorded = path.with_suffix(".sha256")
    if not (path.is_file() and recorded.is_file()) or sha256(path) != recorded.read_text().split()[0]:
        return None  # missing or damaged: never trusted
    return load_file(str(path))


def _cached_state(name: str, train_fn) -> dict[str, torch.Tensor]:
    """Weights that ship with the package, else from the cache, else trained now and written atomically."""
    from safetensors.torch import load_file

    shipped = _shipped_state(name)
    if shipped is not None:
        return shipped
    path = cache_dir() / "fid" / f"{name}-v{CACHE_VERSION}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except (SafetensorError, OSError):  # a corrupt or unreadable cache entry is retrained, never trusted
            pass
    return train_and_save(train_fn, path)


def train_and_save(train_fn, path: Path) -> dict[str, torch.Tensor]:
    """Train with `train_fn` and write its weights to `path` atomically (safetensors); the cache
    and the shipped copy (scripts/package_default_weights.py) are written the same way."""
    from safetensors.torch import save

    with torch.random.fork_rng():  # never disturb the caller's RNG stream (bit-for-bit resume)
        state = {k: v.detach().contiguous() for k, v in train_fn().state_dict().items()}
    atomic_write_bytes(path, save(state))
    return state


def _fit(model: nn.Module, loss_fn, n: int, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n, (128,), generator=gen)
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


class _Classifier(nn.Module):
    def __init__(self, nc: int, classes: int):
        super().__init__()
        self.trunk = _Trunk(nc)
        self.head = nn.Linear(FEATURE_DIM, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def train_digits_classifier() -> nn.Module:
    """The digits classifier (about 98% train accuracy): 250 Adam steps, seed 0."""
    from .data import load_digits

    images, labels = load_digits(32)
    torch.manual_seed(0)  # the initial weights too: the same classifier whatever ran before
    model = _Classifier(1, 10)
    return _fit(model, lambda i: F.cross_entropy(model(images[i]), labels[i]), len(images), 250, seed=0)


def digits_extractor() -> Extractor:
    """The digits classifier, as shipped (else trained once and cached)."""
    model = _Classifier(1, 10)
    model.load_state_dict(_cached_state("digits-classifier", train_digits_classifier))
    model.eval()
    return Extractor("digits-classifier", model.trunk, model)


class _AutoEncoder(nn.Module):
    def __init__(self, nc: int):
        super().__init__()
        self.trunk = _Trunk(nc)
        self.decode = nn.Sequential(
            nn.Linear(FEATURE_DIM, 64 * 16), nn.ReLU(True), nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(True),  # 8
            nn.ConvTranspose2d(32, nc, 4, 2, 1), nn.Tanh(),  # 16
            nn.Upsample(scale_factor=2, mode="bilinear"),  # 32: the pooled input's resolution, upscaled
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.trunk(x))


def autoencoder_extractor(images: torch.Tensor, fingerprint: str) -> Extractor:
    """The documented fallback for unlabelled data: an autoencoder's bottleneck, cached per dataset."""
    nc = int(images.shape[1])

    def train() -> nn.Module:
        torch.manual_seed(0)  # the initial weights too: the same extractor whatever ran before
        model = _AutoEncoder(nc)
        return _fit(model, lambda i: F.mse_loss(model(images[i]), images[i]), len(images), 250, seed=0)

    model = _AutoEncoder(nc)
    model.load_state_dict(_cached_state(f"autoencoder-{fingerprint}", train))
    model.eval()
    return Extractor(f"autoencoder-{fingerprint}", model.trunk, None)


class _TorchScriptInception(nn.Module):
    """Calls a TorchScript Inception the way StyleGAN's metrics do: uint8 RGB, return_features."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        try:
            out = self.module(x, return_features=True)
        except (RuntimeError, TypeError):
            out = self.module(x)
        return out.flatten(1).float()


def torchscript_extractor(path: str | Path) -> Extractor:
    path = Path(path)
    if not path.is_file():
        raise GencompressError(f"--inception-weights {path} does not exist")
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as exc:  # what torch raises for a file that is not TorchScript
        first = first_line(exc)
        raise GencompressError(
            f"--inception-weights {path} is not a TorchScript feature extractor ({first}); "
            "a plain Inception-v3 state dict needs torchvision's architecture, which gencompress does not install"
        ) from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Extractor(f"torchscript-{digest}", _TorchScriptInception(module), None, sphere=False)


def extractor_for(data_name: str, images: torch.Tensor, fingerprint: str, inception_weights: str | None = None) -> Extractor:
    if inception_weights:
        return torchscript_extractor(inception_weights)
    if data_name == "digits":
        return digits_extractor()
    return autoencoder_extractor(images, fingerprint)


# --- statistics and metrics -------------------------------------------------------------


def real_features(extractor: Extractor, images: torch.Tensor, fingerprint: str) -> torch.Tensor:
    """Features of the real data, cached per (data, extractor): computed once per dataset."""
    from safetensors.torch import load_file, save

    path = cache_dir() / "fid" / f"stats-{fingerprint}-{extractor.name}-v{CACHE_VERSION}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError):  # a corrupt or foreign cache entry is recomputed, never trusted
            pass
    feats, _ = extractor.extract(images)
    atomic_write_bytes(path, save({"features": feats.contiguous()}))
    return feats


def quality(extractor: Extractor, real_feats: torch.Tensor, fake_images: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """FID, KID (mean, std over subsets) and, with a classifier, Inception Score."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    import warnings

    warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
    fake_feats, fake_logits = extractor.extract(fake_images)
    dim = int(real_feats.shape[1])
    # Every sample is here, in this process: no cross-process sync. torchmetrics would otherwise
    # all-gather on compute() under torchrun, and rank 0 (which alone evaluates) would wait forever.
    local = {"sync_on_compute": False}
    fid = FrechetInceptionDistance(feature=_Identity(dim), **local)
    fid.update(real_feats, real=True)
    fid.update(fake_feats, real=False)
    subset = min(1000, len(real_feats), len(fake_feats))
    kid = KernelInceptionDistance(feature=_Identity(dim), subsets=50, subset_size=subset, **local)
    kid.update(real_feats, real=True)
    kid.update(fake_feats, real=False)
    with torch.random.fork_rng():  # KID draws random subsets; keep the caller's stream intact
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
        result = {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}
        if fake_logits is not None:
            iscore = InceptionScore(feature=_Identity(int(fake_logits.shape[1])), splits=10, **local)
            iscore.update(fake_logits.float())
            is_mean, is_std = iscore.compute()
            result.update({"is_mean": float(is_mean), "is_std": float(is_std)})
    result["extractor"] = extractor.name
    return result
