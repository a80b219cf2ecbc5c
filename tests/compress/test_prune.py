"""Structured pruning: fewer MACs, the same interface, saved narrower, bad input refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gencompress.bundle import Bundle, sha256
from gencompress.compress import PruneConfig, load_model, prune
from gencompress.compress.distill import DistillConfig, distill
from gencompress.compress.prune import prune_module
from gencompress.errors import GencompressError

NO_DISTILL = dict(distill_steps=0)


def test_half_the_channels_cuts_dcgan_macs_over_3x(tiny_dcgan):
    out = prune(tiny_dcgan, PruneConfig(ratio=0.5, **NO_DISTILL), progress=False)
    stats = out.manifest["metrics"]["prune"]
    assert stats["macs_before"] / stats["macs_after"] >= 3.0
    assert stats["params_after"] < stats["params_before"]
    x = torch.randn(2, *tiny_dcgan.input_shape)
    assert out.model(x).shape == tiny_dcgan.model(x).shape  # latent and image untouched
    step = out.manifest["recipe"][-1]
    assert step["step"] == "prune" and step["protected"] == ["9"] and step["history"]
    assert tiny_dcgan.model[0].out_channels == 64  # the input bundle's model is not modified


def test_round_to_keeps_multiples_of_8(tiny_dcgan):
    out = prune(tiny_dcgan, PruneConfig(ratio=0.3, **NO_DISTILL), progress=False)
    widths = [m.out_channels for m in out.model.modules() if isinstance(m, nn.ConvTranspose2d)][:-1]
    assert all(w % 8 == 0 for w in widths) and widths != [64, 32, 16]


def test_linear_unflatten_stem_is_pruned(tiny_upsample):
    out = prune(tiny_upsample, PruneConfig(ratio=0.5, **NO_DISTILL), progress=False)
    stem, norm = out.model.stem[1], out.model.stem_norm[0]
    assert norm.num_features == 32 and stem.out_features == 32 * 16
    assert out.model(torch.randn(2, *tiny_upsample.input_shape)).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_other_importances_prune(tiny_dcgan, importance):
    out = prune(tiny_dcgan, PruneConfig(ratio=0.5, importance=importance, **NO_DISTILL), progress=False)
    assert out.manifest["metrics"]["prune"]["macs_reduction"] >= 3.0


def test_pruned_bundle_reloads_exactly(tiny_upsample, tmp_path):
    out = prune(tiny_upsample, PruneConfig(ratio=0.5, **NO_DISTILL), progress=False).save(tmp_path / "p")
    model = load_model(Bundle.load(tmp_path / "p"))
    x = torch.randn(3, *tiny_upsample.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), out.model(x))


class _GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 48, 3, padding=1), nn.GroupNorm(6, 48), nn.SiLU(), nn.Conv2d(48, 3, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def test_group_norm_channel_count_stays_divisible():
    model = _GroupNormNet().eval()
    pruned, record = prune_module(model, (4, 8, 8), "uniform", PruneConfig(ratio=0.5, **NO_DISTILL))
    gn = pruned.body[1]
    assert gn.num_channels % gn.num_groups == 0 and gn.num_channels == 24 and record["round_to"] == 4
    assert pruned(torch.randn(1, 4, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(GencompressError, match="strictly between 0 and 1"):
        PruneConfig(ratio=ratio).validate()


def test_pruning_every_channel_is_refused(tiny_dcgan):
    with pytest.raises(GencompressError, match="would remove every channel of layer"):
        prune(tiny_dcgan, PruneConfig(ratio=0.5, round_to=64, **NO_DISTILL), progress=False)


class _Untraceable(nn.Module):
    """One branch leaves autograd (through NumPy): Torch-Pruning cannot see that layer c
    consumes a's channels, so pruning a breaks c."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(16, 3, 1)
        self.c = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        h = self.a(x)
        return self.b(h) + self.c(torch.from_numpy(h.detach().numpy()))


def test_untraceable_architecture_names_the_layer():
    with pytest.raises(GencompressError, match=r"could not trace.*layer c \(Conv2d\)"):
        prune_module(_Untraceable().eval(), (3, 4, 4), "uniform", PruneConfig(ratio=0.5, **NO_DISTILL))


def test_saved_input_bundle_is_untouched_by_a_failed_prune(tiny_dcgan, tmp_path):
    saved = tiny_dcgan.save(tmp_path / "in")
    before = sha256(tmp_path / "in" / "weights.safetensors")
    src = Bundle.load(tmp_path / "in")
    src.model = load_model(src)
    with pytest.raises(GencompressError):
        prune(src, PruneConfig(ratio=0.5, round_to=64), progress=False)
    prune(src, PruneConfig(ratio=0.5, **NO_DISTILL), progress=False)
    assert sha256(tmp_path / "in" / "weights.safetensors") == before and saved.path.exists()


def test_distillation_brings_the_student_closer(tiny_dcgan):
    student, _ = prune_module(tiny_dcgan.model, tiny_dcgan.input_shape, "normal", PruneConfig(ratio=0.5, **NO_DISTILL))
    x = torch.randn(64, *tiny_dcgan.input_shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = (student(x) - tiny_dcgan.model(x)).abs().mean().item()
    log = distill(student, tiny_dcgan.model, tiny_dcgan.input_shape, "normal", DistillConfig(steps=120, batch=16), progress=False)
    with torch.no_grad():
        after = (student(x) - tiny_dcgan.model(x)).abs().mean().item()
    assert log["feature_layers"] == ["0", "3", "6"]
    assert after < 0.6 * before  # 0.37-0.39 over seeds 0-2


def test_the_distillation_batch_follows_the_models_cost():
    from gencompress.compress.prune import MAX_DISTILL_BATCH, MIN_DISTILL_BATCH, distill_batch_for

    assert distill_batch_for(30_000_000) == MAX_DISTILL_BATCH  # a digits GAN: 30 MMAC a sample
    assert distill_batch_for(2_540_000_000) == 25  # the compact SR net at 64 px in
    assert distill_batch_for(17_670_000_000) == MIN_DISTILL_BATCH  # a TAESD decoder at 256 px out
    assert PruneConfig().distill_config().batch == MAX_DISTILL_BATCH  # unset: the small-model batch


def test_prune_sizes_the_distillation_batch_by_the_cost_of_one_sample(tiny_dcgan, monkeypatch):
    """The batch follows one sample's MACs: dividing them by the input's first dimension (the
    latent's channels; a TAESD latent's 4) made a 256-px decoder distil 14 at a time, 19 s a
    step and 6 GB, where 4 was meant."""
    import importlib

    from gencompress.model_stats import count_macs

    prune_mod = importlib.import_module("gencompress.compress.prune")
    asked = []
    monkeypatch.setattr(prune_mod, "distill_batch_for", lambda macs: asked.append(macs) or 4)
    pruned = prune(tiny_dcgan, PruneConfig(ratio=0.5, distill_steps=1), progress=False, fid_samples=0)
    assert asked == [count_macs(tiny_dcgan.model, tiny_dcgan.input_shape)] and tiny_dcgan.input_shape[0] > 1
    assert pruned.last_step("prune")["distill_batch"] == 4
