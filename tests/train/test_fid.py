"""FID/KID/IS on the toolkit's own extractors (gencompress/fid.py)."""
from __future__ import annotations

import pytest
import torch

from gencompress import fid
from gencompress.data import load_digits
from gencompress.errors import GencompressError


class _MeanPool(torch.nn.Module):
    """A stand-in for a TorchScript Inception: uint8 RGB in, per-channel means out."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_digits_extractor_ranks_real_digits_above_noise():
    images, labels = load_digits(32)
    ex = fid.digits_extractor()
    with torch.no_grad():
        accuracy = (ex.logits(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95  # the classifier must know the digits for IS and features to mean anything
    real = fid.real_features(ex, images, "digits-test")
    same = fid.quality(ex, real, images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:500]])
    noise = fid.quality(ex, real, torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert same["fid"] < 0.2 * noise["fid"]
    assert abs(same["kid_mean"]) < 0.1 < noise["kid_mean"]
    assert same["is_mean"] > 7.0 and noise["is_mean"] < 3.0  # 10 balanced classes vs one blur
    # cached statistics are reused, bit for bit
    assert torch.equal(fid.real_features(ex, images, "digits-test"), real)


def test_torchscript_inception_weights_are_used_and_bad_files_refused(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_MeanPool()).save(str(path))
    ex = fid.extractor_for("digits", torch.zeros(1, 1, 32, 32), "x", inception_weights=str(path))
    assert ex.name.startswith("torchscript-") and ex.logits is None
    feats, _ = ex.extract(torch.full((4, 1, 32, 32), 1.0))
    assert torch.allclose(feats, torch.full((4, 3), 255.0, dtype=torch.float64))  # [-1, 1] -> uint8, grey -> RGB
    bad = tmp_path / "state_dict.pth"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(GencompressError, match="not a TorchScript feature extractor.*torchvision"):
        fid.torchscript_extractor(bad)


def test_the_digits_classifier_ships_trained_and_a_damaged_copy_is_retrained(tmp_path, monkeypatch):
    """Every machine scores digits with the same shipped classifier (its SHA-256 beside it); a
    copy that does not match its hash is never loaded: the classifier is trained instead."""
    from safetensors.torch import load_file

    from gencompress.bundle import sha256

    shipped = fid.shipped_path("digits-classifier")
    assert sha256(shipped) == shipped.with_suffix(".sha256").read_text().split()[0]
    trained = []

    def train_instead():
        trained.append(1)
        return fid._Classifier(1, 10)

    monkeypatch.setattr(fid, "train_digits_classifier", train_instead)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = fid.digits_extractor().logits
    assert not trained and all(torch.equal(v, load_file(str(shipped))[k]) for k, v in model.state_dict().items())

    damaged = tmp_path / "weights"
    damaged.mkdir()
    data = bytearray(shipped.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last weight
    (damaged / shipped.name).write_bytes(bytes(data))
    (damaged / shipped.with_suffix(".sha256").name).write_text(shipped.with_suffix(".sha256").read_text())
    monkeypatch.setattr(fid, "SHIPPED_DIR", damaged)
    fid.digits_extractor()
    assert trained == [1]


def test_a_trained_extractor_does_not_depend_on_the_callers_random_state(tmp_path, monkeypatch):
    """The autoencoder extractor (unlabelled data) is trained on first use: its initial weights
    followed whatever the caller had drawn before, so two runs scored FID with different features."""
    images = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_fit = fid._fit
    monkeypatch.setattr(fid, "_fit", lambda model, loss_fn, n, steps, seed: real_fit(model, loss_fn, n, 2, seed))  # 2 steps, not 250
    trunks = []
    for run, seed in enumerate((1, 2)):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache{run}"))  # a fresh cache: trained again
        torch.manual_seed(seed)
        torch.randn(run + 3)
        trunks.append(fid.autoencoder_extractor(images, "same-data").features.state_dict())
    assert all(torch.equal(trunks[0][k], trunks[1][k]) for k in trunks[0])
