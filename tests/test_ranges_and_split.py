"""Issue 24: ranges that cannot be silently wrong, and a split of the user's data that evaluates on all of it."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from gencompress.bundle import Bundle
from gencompress.errors import GencompressError
from gencompress.inputs import output_range_warnings, require_ranges_for_images, split, user_data
from tests.helpers import run_cli
from tests.reliability.util import assert_one_line_error, run_main
from tests.user_folder import user_folder

NARROW = """
    class Narrow(TinySR):
        # the same net squeezed into [0.4, 0.6]: a fifth of the [0, 1] range it is declared with
        def forward(self, x):
            return 0.4 + 0.2 * super().forward(x)

    def narrow():
        torch.manual_seed(0)
        return Narrow()
"""
MODEL = ["--model", "range_nets:make", "--input-shape", "1x3x8x8"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A user's folder: the nets' module, their weights (a checkpoint: not random) and 12 photos."""
    return user_folder(tmp_path, monkeypatch, "range_nets", NARROW, checkpoint="sr.safetensors")


# --- 1. ranges -----------------------------------------------------------------------------


def test_a_01_net_built_on_a_folder_without_ranges_is_refused_in_one_line(work):
    outcome = run_main("build", "--precision", "fp32", *MODEL, "--data", "folder:photos", "--out", "b")
    assert_one_line_error(outcome, "folder images need the model's input-range and output-range: pass --input-range 0,1 "
                                   "--output-range 0,1 for a [0, 1] net, or --input-range -1,1 --output-range -1,1 for a [-1, 1] net")
    assert not (work / "b").exists()
    outcome = run_main("build", "--precision", "fp32", *MODEL, "--data", "folder:photos", "--output-range", "measured", "--out", "b")
    assert_one_line_error(outcome, "folder images need the model's input-range: pass --input-range 0,1 for a [0, 1] net")
    assert not (work / "b").exists()


def test_ranges_declared_by_an_earlier_stage_carry_over_and_undeclared_ones_do_not(work):
    built = run_cli("build", "--precision", "fp32", *MODEL, "--checkpoint", "sr.safetensors", "--data", "folder:photos",
                    "--input-range", "0,1", "--output-range", "0,1", "--eval-samples", "4", "--out", "declared")
    assert built.exit_code == 0, built.output
    manifest = Bundle.load(work / "declared").manifest
    assert manifest["input"]["range_from"] == "declared" and manifest["output"]["range_from"] == "declared"
    assert manifest["data"]["split_seed"] == 0 and manifest["data"]["split"].startswith("a random 4 of the 12 (seed 0)")
    quantized = run_cli("quantize", "declared", "--data", "folder:photos", "--calib-samples", "6", "--out", "q")
    assert quantized.exit_code == 0, quantized.output  # the manifest's ranges serve
    # a bundle whose image ranges were never declared: its default [-1, 1] is a guess, so folder images are refused
    guessed = run_cli("build", "--precision", "fp32", *MODEL, "--checkpoint", "sr.safetensors", "--input-kind", "image", "--eval-samples", "4",
                      "--out", "guessed")
    assert guessed.exit_code == 0, guessed.output
    assert_one_line_error(run_main("quantize", "guessed", "--data", "folder:photos", "--out", "q2"),
                          "folder images need the model's input-range and output-range")
    assert not (work / "q2").exists()


def test_a_zoo_models_ranges_are_its_own():
    zoo = {"architecture": {"kind": "zoo", "name": "resnet_generator"}, "input": {"shape": [1, 32, 32]}, "output": {"range": [-1, 1]}}
    require_ranges_for_images(zoo)  # trained on digits mapped to [-1, 1]: nothing to ask
    with pytest.raises(GencompressError, match="output-range: pass --output-range 0,1"):
        require_ranges_for_images({"architecture": {"kind": "onnx"}, "input": {"range": [0, 1], "range_from": "declared"},
                                   "output": {"range": [-1, 1]}})


def test_outputs_filling_a_fifth_of_the_declared_range_are_warned_in_the_cli_line_and_report(work):
    outcome = run_main("build", "--precision", "fp32", "--model", "range_nets:narrow", "--input-shape", "1x3x8x8", "--checkpoint", "sr.safetensors",
                       "--data", "folder:photos", "--input-range", "0,1", "--output-range", "0,1", "--eval-samples", "4", "--out", "b")
    assert outcome.exit_code == 0, outcome
    warnings = Bundle.load(work / "b").manifest["metrics"]["build"]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("the FP32 outputs fill only ")
    filled = float(warnings[0].split("fill only ")[1].split("%")[0])
    assert 5 <= filled <= 20  # 0.4 + 0.2 x [0, 1]: at most a fifth of [0, 1]
    assert "pass --output-range LOW,HIGH or --output-range measured" in warnings[0]
    assert f"WARNING: {warnings[0]}" in outcome.stdout
    assert f"**Warning: {warnings[0]}.**" in (work / "b" / "report" / "report.md").read_text()
    # the same net unsqueezed fills its range: no warning
    outcome = run_main("build", "--precision", "fp32", *MODEL, "--checkpoint", "sr.safetensors", "--data", "folder:photos",
                       "--input-range", "0,1", "--output-range", "0,1", "--eval-samples", "4", "--out", "full")
    assert outcome.exit_code == 0, outcome
    assert Bundle.load(work / "full").manifest["metrics"]["build"]["warnings"] == []


def _manifest(output: dict) -> dict:
    return {"input": {"shape": [3, 8, 8]}, "output": output}


def test_output_range_warnings_fill_spill_default_and_measured():
    rng = np.random.default_rng(0)
    unit = rng.random((8, 3, 16, 16)).astype(np.float32)  # fills [0, 1]
    declared = _manifest({"range": [0.0, 1.0], "range_from": "declared"})
    assert output_range_warnings(declared, unit) == []
    # a [0, 1] net judged on the default [-1, 1]: half the range, said with where the range came from
    (warning,) = output_range_warnings(_manifest({"range": [-1.0, 1.0]}), unit)
    assert "fill only 50% of the output range [-1, 1], the default (no --output-range was given)" in warning
    # 2% of the outputs past the range by a tenth of its width: said, under the far-outside error
    spill = unit.copy()
    spill.flat[: spill.size // 50] = 1.1
    (warning,) = output_range_warnings(declared, spill)
    assert warning.startswith("2.0% of the FP32 outputs lie outside the output range [0, 1] (they span ")
    assert output_range_warnings(declared, np.clip(unit, 0.0, 1.005)) == []  # within 1% of the width: not noticeable
    assert output_range_warnings(_manifest({"range": [0.4, 0.6], "range_from": "measured"}), 0.4 + 0.2 * unit) == []


# --- 3. the split ----------------------------------------------------------------------------

IMAGE_SPEC = {"shape": [3, 8, 8], "range": [0.0, 1.0], "distribution": "uniform"}


def _three_photos(root, crops: int = 20):
    """Crops of three photos, named as a tiler names them (china_00.png, ...): each photo its own
    dominant colour channel, each crop its own noise, so an input tells which photo it came from."""
    rng = np.random.default_rng(0)
    (root / "crops").mkdir()
    for photo, name in enumerate(("china", "flower", "sky")):
        for i in range(crops):
            pixels = rng.integers(0, 40, (10, 12, 3))
            pixels[..., photo] += 200
            Image.fromarray(pixels.astype(np.uint8)).save(root / "crops" / f"{name}_{i:02d}.png")
    return f"folder:{root / 'crops'}"


def _photo_of(inputs) -> list[int]:
    return inputs.mean(dim=(2, 3)).argmax(dim=1).tolist()  # the dominant channel names the photo


def test_evaluation_inputs_come_from_every_photo_and_never_calibrate(tmp_path):
    spec = _three_photos(tmp_path)
    data = user_data(spec, IMAGE_SPEC, eval_samples=8)
    assert set(_photo_of(data.evaluation)) == {0, 1, 2}  # the first 8 in name order are all china_*
    assert set(_photo_of(data.calibration(8))) == {0, 1, 2}  # calibration draws from all of it too
    assert len(data.evaluation) == 8 and len(data.rest) == 52
    # disjoint, and together every input once
    every = torch.cat([data.evaluation, data.rest]).flatten(1)
    assert len(torch.unique(every, dim=0)) == 60
    assert data.record["split_seed"] == 0 and data.record["split"] == "a random 8 of the 60 (seed 0) evaluate, the other 52 calibrate"
    # reproducible: the same data splits the same way, another seed another way
    again = user_data(spec, IMAGE_SPEC, eval_samples=8)
    assert torch.equal(again.evaluation, data.evaluation) and torch.equal(again.rest, data.rest)
    inputs = torch.cat([data.evaluation, data.rest])
    assert not torch.equal(split(inputs, 8, seed=1)[0], split(inputs, 8, seed=0)[0])
