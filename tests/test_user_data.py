"""The user's data (issue 12): --data folder:|npz:|callable, the input/output spec, and their bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.inputs import load_data, prepare_inputs, settle_output_range, split
from gencompress.metrics import psnr
from tests.helpers import run_cli
from tests.reliability.util import assert_one_line_error, run_main
from tests.user_folder import user_folder

SR_EXTRA = """
    def batches():
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            yield torch.rand(4, 3, 8, 8, generator=g)

    def raises():
        raise RuntimeError("loader broke")
        yield

    def nothing():
        return iter(())

    def wrong_shape():
        yield torch.zeros(2, 1, 8, 8)
"""
SR = ["--model", "sr_user_net:make", "--input-shape", "1x3x8x8"]
RANGES = ["--input-range", "0,1", "--output-range", "0,1"]  # folder images need them (require_ranges_for_images)


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A working folder with the SR net's module and 12 RGB images of 10 x 12 pixels."""
    return user_folder(tmp_path, monkeypatch, "sr_user_net", SR_EXTRA, images="imgs")


# --- done when: an SR net built on a folder of the user's images ---------------------------


def test_sr_build_on_a_folder_judges_on_the_users_images_with_peak_1(user):
    outcome = run_cli("build", "--precision", "int8", *SR, "--data", "folder:imgs", "--input-range", "0,1", "--output-range", "0,1",
                       "--eval-samples", "4", "--calib-samples", "8", "--out", "b", "--json", "-")
    assert outcome.exit_code == 0, outcome
    summary = json.loads(outcome.stdout)
    q = summary["quality"]
    assert q["psnr_peak"] == 1.0 and q["output_range"] == [0.0, 1.0] and q["samples"] == 4
    # the PSNR is the compressed ONNX against FP32 on the first 4 images, with peak 1.0
    manifest = Bundle.load(user / "b").manifest
    inputs, record = load_data("folder:imgs", manifest["input"])
    assert record["sha256"] == manifest["data"]["sha256"] == q["inputs"]["sha256"]
    assert manifest["data"]["count"] == 12 and q["inputs"]["evaluation_samples"] == 4 and q["inputs"]["calibration_samples"] == 8
    import onnxruntime as ort

    from sr_user_net import make

    evaluation = split(inputs, 4)[0]  # the seeded random split's evaluation inputs
    with torch.no_grad():
        reference = make().eval()(evaluation).numpy()
    options = ort.SessionOptions()  # as the build's gate runs a TensorRT graph: the graph's own arithmetic, no ORT fusions
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(user / "b" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: evaluation.numpy()})[0]
    assert q["psnr_db"] == pytest.approx(psnr(reference, got, data_range=1.0), abs=1e-3)
    assert psnr(reference, got, data_range=2.0) - q["psnr_db"] == pytest.approx(6.02, abs=0.01)  # not the [-1, 1] peak
    # calibration ran on the other 8 images, and the manifest and report name the data
    quant = [s for s in manifest["recipe"] if s["step"] == "quantize"][-1]
    assert quant["data"]["sha256"] == record["sha256"] and "8 calibration inputs from folder:" in quant["calibration_data"]
    assert manifest["input"]["kind"] == "image" and manifest["input"]["range"] == [0.0, 1.0]
    report = (user / "b" / "report" / "report.md").read_text()
    assert f"folder:{user / 'imgs'}" in report and "PSNR's peak is 1" in report and record["sha256"][:12] in report
    grid = np.asarray(Image.open(user / "b" / "report" / "samples.png"))
    assert grid.shape[0] > 500  # four rows of images: input | original | compressed | difference


def test_the_grid_shows_the_input_row_first_over_its_own_range(tmp_path):
    from gencompress.benchmarks.report import sample_grid

    inputs = np.ones((2, 3, 8, 8), np.float32)  # white in [0, 1]
    outputs = np.zeros((2, 3, 16, 16), np.float32)  # black in [0, 1]
    path = sample_grid(outputs, outputs, tmp_path / "g.png", n=2, inputs=inputs, input_range=(0, 1), output_range=(0, 1))
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    h = grey.shape[0]
    rows = [grey[int(h * (r + 0.5) / 4) - 3 : int(h * (r + 0.5) / 4) + 3, grey.shape[1] // 4] for r in range(4)]
    assert rows[0].mean() > 200 and all(r.mean() < 60 for r in rows[1:])


def test_without_data_the_report_says_quality_was_measured_on_drawn_inputs(user):
    outcome = run_cli("build", "--precision", "fp32", *SR, "--input-kind", "image", "--input-range", "0,1", "--output-range", "0,1",
                       "--eval-samples", "4", "--out", "b", "--json", "-")
    assert outcome.exit_code == 0, outcome
    q = json.loads(outcome.stdout)["quality"]
    assert q["inputs"] == {"kind": "drawn", "distribution": "U(0, 1)", "count": 4, "seed": 0}
    assert "quality was measured on drawn inputs" in (user / "b" / "report" / "report.md").read_text()
    assert "data" not in Bundle.load(user / "b").manifest


def test_export_bench_quantize_and_prune_take_the_data(user):
    out = run_cli("build", "--precision", "fp32", *SR, "--data", "folder:imgs", "--input-range", "0,1", "--output-range", "0,1",
                   "--eval-samples", "4", "--out", "fp")
    assert out.exit_code == 0, out
    q = run_cli("quantize", "fp", "--data", "folder:imgs", "--calib-samples", "8", "--out", "q")
    assert q.exit_code == 0, q
    step = Bundle.load(user / "q").manifest["recipe"][-1]
    assert step["data"]["kind"] == "folder" and step["data"]["calibration_samples"] == 6  # 12 < 2 x 64: half and half
    e = run_cli("export", "q", "--data", "folder:imgs", "--eval-samples", "4", "--verify-psnr", "20", "--out", "e", "--json", "-")
    assert e.exit_code == 0, e
    verification = json.loads(e.stdout)["export_verification"]
    assert verification["samples"] == 4 and verification["psnr_peak"] == 1.0
    b = run_cli("bench", "q", "--data", "folder:imgs", "--eval-samples", "4", "--batch", "2", "--iters", "2", "--warmup", "0")
    assert b.exit_code == 0, b
    bench = json.loads(b.stdout)
    assert bench["quality_inputs"]["evaluation_samples"] == 4 and bench["psnr_peak"] == 1.0
    p = run_cli("prune", "fp", "--prune", "0.5", "--round-to", "1", "--distill-steps", "3", "--fid-samples", "0",
                 "--data", "folder:imgs", "--out", "p")
    assert p.exit_code == 0, p
    distill = Bundle.load(user / "p").manifest["recipe"][-1]
    assert distill["step"] == "distill" and distill["data"]["sha256"] == step["data"]["sha256"]


# --- the sources, the split, the spec ------------------------------------------------------


def test_folder_images_are_resized_cropped_converted_and_mapped_to_the_input_range(tmp_path):
    (tmp_path / "f").mkdir()
    Image.fromarray(np.full((20, 40), 255, np.uint8)).save(tmp_path / "f" / "white.png")  # grey, 2:1
    x, record = load_data(f"folder:{tmp_path / 'f'}", {"shape": [3, 8, 8], "range": [-1.0, 1.0], "distribution": "uniform"})
    assert x.shape == (1, 3, 8, 8) and torch.allclose(x, torch.ones_like(x))
    x, _ = load_data(f"folder:{tmp_path / 'f'}", {"shape": [1, 4, 6], "range": [0.0, 0.5], "distribution": "uniform"})
    assert x.shape == (1, 1, 4, 6) and torch.allclose(x, torch.full_like(x, 0.5))
    assert record["kind"] == "folder" and record["count"] == 1 and len(record["sha256"]) == 64


def test_npz_one_array_or_a_named_key_and_callable_batches(user):
    latents = np.random.default_rng(0).normal(0, 5, (10, 4, 2, 2)).astype(np.float32)
    np.savez(user / "one.npz", latents)
    np.savez(user / "two.npz", z=latents, other=latents[:2])
    spec = {"shape": [4, 2, 2], "distribution": "normal"}
    x, record = load_data("npz:one.npz", spec)
    assert np.array_equal(x.numpy(), latents) and record["count"] == 10
    y, record2 = load_data("npz:two.npz#z", spec)
    assert np.array_equal(y.numpy(), latents) and record2["key"] == "z" and record2["sha256"] == record["sha256"]
    z, record3 = load_data("sr_user_net:batches", {"shape": [3, 8, 8], "distribution": "uniform"})
    assert z.shape == (12, 3, 8, 8) and record3 == {**record3, "kind": "callable", "path": "sr_user_net:batches"}
    z, _ = load_data("sr_user_net:batches", {"shape": [3, 8, 8], "distribution": "uniform"}, max_samples=5)
    assert len(z) == 5


def test_split_is_disjoint_with_a_stated_fallback():
    x = torch.arange(10.0).reshape(10, 1)
    evaluation, rest, rule = split(x, 4)
    assert len(evaluation) == 4 and sorted(evaluation[:, 0].tolist() + rest[:, 0].tolist()) == list(range(10))
    assert rule == "a random 4 of the 10 (seed 0) evaluate, the other 6 calibrate"
    evaluation, rest, rule = split(x[:6], 4)
    assert len(evaluation) == 3 and len(rest) == 3 and "only 6 samples" in rule
    with pytest.raises(GencompressError, match="at least 2"):
        split(x[:1], 4)


def test_draws_follow_the_input_spec():
    wide = draw_inputs((4, 8, 8), 256, {"distribution": "normal", "std": 5.0}, 0)
    assert float(wide.std()) == pytest.approx(5.0, rel=0.03)
    unit = draw_inputs((3, 8, 8), 64, {"distribution": "uniform", "range": [0.0, 1.0]}, 0)
    assert 0.0 <= float(unit.min()) < 0.01 and 0.99 < float(unit.max()) <= 1.0
    assert torch.equal(draw_inputs((4,), 8, "normal", 3), draw_inputs((4,), 8, {"distribution": "normal"}, 3))


def test_output_range_measured_and_the_spec_in_the_manifest():
    manifest = {"input": {"name": "latent", "shape": [4, 1, 1], "distribution": "normal"}, "output": {"name": "image"}}
    prepare_inputs(manifest, None, {"input_std": 5.0, "output_range": "measured"}, 4)
    assert manifest["input"] == {"name": "latent", "shape": [4, 1, 1], "distribution": "normal", "std": 5.0}
    settle_output_range(manifest, np.array([-3.0, 7.5]))
    assert manifest["output"]["range"] == [-3.0, 7.5]
    from gencompress.bundle import new_manifest, validate_manifest

    full = new_manifest({"kind": "zoo", "name": "dcgan"}, manifest["input"], manifest["output"])
    validate_manifest(full)  # the new fields are in the schema


# --- bad input: one line, exit 2, nothing written to --out --------------------------------


def _junk_folder(root):
    (root / "junk").mkdir()
    (root / "junk" / "x.png").write_bytes(b"not a png")
    return "folder:junk"


def _bad_npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda d: "folder:imgs", ["--input-shape", "1x1x8x8"], "do not fit"),  # handled below with its own model
        (lambda d: _bad_npz(d / "s.npz", x=np.zeros((4, 3, 9, 8), np.float32)), [], "Nx3x9x8 do not fit the model's input Nx3x8x8"),
        (lambda d: _bad_npz(d / "r.npz", x=np.zeros((4, 3, 8), np.float32)), [], "rank 3"),
        (lambda d: _bad_npz(d / "n.npz", x=np.full((4, 3, 8, 8), np.nan, np.float32)), [], "NaN or Inf"),
        (lambda d: _bad_npz(d / "k.npz", a=np.zeros((4, 3, 8, 8)), b=np.zeros((4, 3, 8, 8))), [], "name one"),
        (lambda d: _bad_npz(d / "m.npz", a=np.zeros((4, 3, 8, 8))) + "#zz", [], "has no array 'zz'"),
        (lambda d: _bad_npz(d / "one.npz", a=np.zeros((1, 3, 8, 8))), [], "needs at least 2"),
        (lambda d: (d / "empty").mkdir() or "folder:empty", RANGES, "holds no images"),
        (lambda d: _junk_folder(d), RANGES, "cannot read image"),
        (lambda d: "folder:nowhere", RANGES, "does not exist"),
        # a missing or empty folder is named before the ranges are asked for: they would not help
        (lambda d: "folder:nowhere", [], "does not exist"),
        (lambda d: (d / "empty").mkdir() or "folder:empty", [], "holds no images"),
        (lambda d: "npz:missing.npz", [], "no such file"),
        (lambda d: "sr_user_net:raises", [], "loader broke"),
        (lambda d: "sr_user_net:nothing", [], "yielded no batches"),
        (lambda d: "sr_user_net:wrong_shape", [], "Nx1x8x8 do not fit the model's input Nx3x8x8"),
        (lambda d: "ftp://x", [], "is not folder:PATH"),
        (lambda d: "folder:imgs", ["--input-range", "0,1", "--output-range", "0,0.01"], "far outside the output range [0, 0.01]"),
        (lambda d: "folder:imgs", ["--input-std", "2", "--input-range", "0,1"], "exclude each other"),
    ],
)
def test_bad_data_is_one_line_exit_2_and_writes_nothing(user, make, extra, message):
    spec = make(user)
    args = SR
    if extra[:1] == ["--input-shape"]:  # a latent generator cannot take images: both shapes named
        (user / "latent_gen.py").write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.ConvTranspose2d(16, 3, 4), nn.Tanh())\n")
        args, extra, message = ["--model", "latent_gen:make", "--input-shape", "1x16x1x1"], [], "the model takes 16x1x1 inputs"
    outcome = run_main("build", "--precision", "fp32", *args, "--data", spec, *extra, "--out", "out")
    assert_one_line_error(outcome, message)
    assert not (user / "out").exists()


def test_bad_data_fails_before_quantize_and_export_write_anything(user):
    assert run_cli("build", "--precision", "fp32", *SR, "--input-kind", "image", "--input-range", "0,1", "--output-range", "0,1", "--out", "fp").exit_code == 0
    np.savez(user / "bad.npz", x=np.zeros((4, 3, 9, 8), np.float32))
    for cmd in (["quantize", "fp"], ["export", "fp"], ["bench", "fp"], ["prune", "fp", "--prune", "0.5"]):
        out = ["--out", "o"] if cmd[0] != "bench" else []
        assert_one_line_error(run_main(*cmd, "--data", "npz:bad.npz", *out), "do not fit the model's input Nx3x8x8")
        assert not (user / "o").exists()


@pytest.mark.slow
def test_bench_fid_against_the_users_reference_images_states_samples_and_extractor(user):
    assert run_cli("build", "--precision", "fp32", *SR, "--data", "folder:imgs", "--input-range", "0,1", "--output-range", "0,1",
                   "--eval-samples", "4", "--out", "fp").exit_code == 0
    b = run_cli("bench", "fp", "--data", "folder:imgs", "--ref-data", "folder:imgs", "--fid-samples", "12", "--eval-samples", "4",
                "--batch", "2", "--iters", "1", "--warmup", "0")
    assert b.exit_code == 0, b.output
    fid = json.loads(b.stdout)["quality_vs_data"]
    assert fid["available"] and fid["samples"] == 12 and fid["real_samples"] == 12
    assert fid["data"] == f"folder:{user / 'imgs'}" and fid["extractor"].startswith("autoencoder-")
    assert fid["fid"] >= 0 and "biased upwards" in fid["warning"]
    for args, message in [(["--ref-data", "digits", "--fid-samples", "4"], "must be folder:PATH or npz:PATH"),
                          (["--ref-data", "folder:imgs"], "--ref-data does not apply here: FID/KID runs only with --fid-samples N")]:
        assert_one_line_error(run_main("bench", "fp", *args), message)
