"""Nothing silent (issue 16): random or mis-fitting weights are said, pickled whole modules load
with --trust-pickle, and option errors speak of the option the user typed."""
from __future__ import annotations

import textwrap

import pytest
import torch
from safetensors.torch import save_file

from gencompress.bundle import Bundle
from gencompress.errors import GencompressError
from gencompress.loading import load_checkpoint, load_spec
from tests.reliability.util import assert_one_line_error, random_dcgan_bundle, replace_weights, run_main, tree_digest

GEN = textwrap.dedent(
    """
    from torch import nn

    def gen(ngf):
        return nn.Sequential(nn.ConvTranspose2d(8, ngf, 4, 1, 0), nn.ReLU(), nn.ConvTranspose2d(ngf, 1, 4, 2, 1), nn.Tanh())

    def ngf32():
        return gen(32)

    def ngf64():
        return gen(64)

    def renamed():
        return nn.Sequential(nn.Identity(), nn.ConvTranspose2d(8, 32, 4, 1, 0), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Tanh())
    """
)


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A user's project: generator code of two widths, and a checkpoint of the wide one."""
    (tmp_path / "mygen16.py").write_text(GEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    gen = importlib.import_module("mygen16")
    torch.manual_seed(0)
    save_file(gen.ngf64().state_dict(), str(tmp_path / "ngf64.safetensors"))
    save_file(gen.ngf32().state_dict(), str(tmp_path / "ngf32.safetensors"))
    random_dcgan_bundle(tmp_path / "out")  # an existing output every failure must leave alone
    return tmp_path


def _quick_build(monkeypatch):
    import gencompress.cli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "latency_table", lambda *a, **k: [])  # timing is not what these tests are about
    monkeypatch.setattr(pipeline, "paired_speedup", lambda *a, **k: None)


# --- 2. weights that are random or do not fit ------------------------------------------------


def test_an_import_spec_without_checkpoint_warns_in_the_cli_line_and_the_report(proj, monkeypatch):
    _quick_build(monkeypatch)
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:ngf32", "--input-shape", "1x8x1x1", "--out", "b")
    assert outcome.exit_code == 0, outcome
    warning = "random weights: mygen16:ngf32 was built with its own initialisation (no --checkpoint was given)"
    line = next(ln for ln in outcome.stdout.splitlines() if ln.startswith("wrote "))  # the "took" line follows
    assert line.startswith("wrote b: ") and "fp32 PSNR" in line and f"WARNING: {warning}" in line
    assert f"**Warning: {warning}, so this measures an untrained model.**" in (proj / "b" / "report" / "report.md").read_text()
    bundle = Bundle.load(proj / "b")
    assert bundle.manifest["recipe"][0] == {"step": "load", "weights": "random"}
    assert bundle.manifest["metrics"]["build"]["warnings"] == [f"{warning}, so this measures an untrained model"]


def test_a_checkpoint_is_recorded_and_no_warning_given(proj, monkeypatch):
    from gencompress.bundle import sha256

    _quick_build(monkeypatch)
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:ngf32", "--input-shape", "1x8x1x1",
                       "--checkpoint", "ngf32.safetensors", "--out", "b")
    assert outcome.exit_code == 0, outcome
    # no weights warning (this untrained-looking checkpoint fills a quarter of [-1, 1]: the range warning is another matter)
    assert "random weights" not in outcome.stdout and "random weights" not in (proj / "b" / "report" / "report.md").read_text()
    assert Bundle.load(proj / "b").manifest["recipe"][0] == {
        "step": "load", "weights": "checkpoint", "checkpoint": "ngf32.safetensors",
        "checkpoint_sha256": sha256(proj / "ngf32.safetensors")}


def test_a_wider_checkpoint_is_an_error_naming_every_layer_and_both_shapes(proj):
    before = tree_digest(proj)
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:ngf32", "--input-shape", "1x8x1x1",
                       "--checkpoint", "ngf64.safetensors", "--out", "out")
    assert_one_line_error(outcome, "weights do not fit the architecture: layer '0.weight' is 8x64x4x4 in checkpoint "
                                   "ngf64.safetensors, 8x32x4x4 in the model; layer '0.bias' is 64 in checkpoint ngf64.safetensors, "
                                   "32 in the model; layer '2.weight' is 64x1x4x4 in checkpoint ngf64.safetensors, 32x1x4x4 in the model "
                                   "(layers are never resized to fit")
    assert tree_digest(proj) == before


def test_a_narrower_checkpoint_is_refused_too(proj):
    """Narrower is how pruning looks, but only a bundle whose recipe records pruning may be narrower."""
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:ngf64", "--input-shape", "1x8x1x1",
                       "--checkpoint", "ngf32.safetensors", "--out", "out")
    assert_one_line_error(outcome, "layer '0.weight' is 8x32x4x4 in checkpoint ngf32.safetensors, 8x64x4x4 in the model")


def test_missing_and_unexpected_keys_are_each_named(proj):
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:renamed", "--input-shape", "1x8x1x1",
                       "--checkpoint", "ngf32.safetensors", "--out", "out")
    assert_one_line_error(outcome, "weights do not fit the architecture: missing in checkpoint ngf32.safetensors: '1.weight' "
                                   "(8x32x4x4 in the model); '1.bias' (32 in the model); '3.weight' (32x1x4x4 in the model); "
                                   "'3.bias' (1 in the model); unexpected in checkpoint ngf32.safetensors, not in the model: "
                                   "'0.bias' (32); '0.weight' (8x32x4x4); '2.bias' (1); '2.weight' (32x1x4x4) (4 missing, 4 unexpected)")


def test_an_unpruned_bundle_with_narrower_weights_is_not_resized(tmp_path):
    saved = random_dcgan_bundle(tmp_path / "b")
    state = saved.model.state_dict()
    narrow = {k: v.clone() for k, v in state.items()}
    narrow["0.weight"] = state["0.weight"][:, :8].clone()  # a layer silently narrowed
    replace_weights(saved.path, narrow)
    with pytest.raises(GencompressError, match=r"layer '0\.weight' is 100x8x4x4 in bundle .*, 100x\d+x4x4 in the model"):
        load_spec(str(saved.path))


def test_a_pruned_bundle_still_loads_at_its_narrower_widths(tmp_path):
    from gencompress.compress import PruneConfig, prune

    pruned = prune(random_dcgan_bundle(tmp_path / "b"), PruneConfig(ratio=0.5, distill_steps=0), progress=False).save(tmp_path / "p")
    model = load_spec(str(pruned.path)).model
    assert model(torch.randn(2, 100, 1, 1)).shape == (2, 1, 32, 32)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in pruned.model.parameters()) * 1.01


# --- 4. torch.save(model) with --trust-pickle ---------------------------------------------


def test_a_whole_pickled_module_loads_with_trust_pickle_as_its_state_dict(proj):
    import mygen16

    model = mygen16.ngf32()
    torch.save(model, proj / "whole.pt")
    torch.save({"epoch": 3, "generator": model}, proj / "wrapped.pt")
    with pytest.raises(GencompressError, match="refusing to unpickle it .pass --trust-pickle"):
        load_checkpoint(proj / "whole.pt")
    for name in ("whole.pt", "wrapped.pt"):
        state = load_checkpoint(proj / name, trust_pickle=True)
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    bundle = load_spec("mygen16:ngf32", (1, 8, 1, 1), str(proj / "whole.pt"), trust_pickle=True)
    assert torch.equal(bundle.model.state_dict()["0.weight"], model.state_dict()["0.weight"])


# --- 6. messages about the option the user typed --------------------------------------------


def test_prune_50_speaks_of_prune_as_a_fraction(proj):
    outcome = run_main("build", "--prune", "50", "--out", "out")
    assert_one_line_error(outcome, "Invalid value for '--prune': 50 is not a fraction in (0, 1)")
    assert "--ratio" not in outcome.stderr


def test_build_config_prune_message_speaks_of_prune():
    from gencompress.cli.pipeline import BuildConfig

    with pytest.raises(GencompressError, match=r"^--prune 50 is not a fraction in \(0, 1\)"):
        BuildConfig(prune=50).validate()


def test_int8_and_precision_int8_together_agree_and_two_precisions_are_refused(proj):
    before = tree_digest(proj / "out")
    outcome = run_main("build", "--int8", "--fp16", "--out", "out")
    assert_one_line_error(outcome, "fp16 and int8 contradict each other")
    assert tree_digest(proj / "out") == before


@pytest.mark.parametrize("flags, precision", [((), "int8"), (("--precision", "fp16"), "fp16"), (("--fp32",), "fp32"),
                                              (("--precision", "int8"), "int8")])
def test_one_precision_flag_still_selects_it(proj, monkeypatch, flags, precision):
    import gencompress.cli.build_cmd as build_cmd

    seen = {}

    def fake_build(cfg):
        seen["precision"] = cfg.precision
        raise GencompressError("stop here")

    monkeypatch.setattr(build_cmd, "run_build", fake_build)
    assert_one_line_error(run_main("build", *flags, "--out", "out"), "stop here")
    assert seen == {"precision": precision}


def test_a_wrong_input_shape_is_reported_with_the_users_batch(proj):
    outcome = run_main("build", "--precision", "fp32", "--model", "mygen16:ngf32", "--input-shape", "4x3x1x1", "--out", "out")
    assert_one_line_error(outcome, "input shape 4x3x1x1 does not fit the model")
    assert "2x3x1x1" not in outcome.stderr
