"""Issue 24, item 7: the small things a newcomer trips on get an answer that says what to type."""
from __future__ import annotations


from types import SimpleNamespace

import pytest
import torch

from gencompress.bundle import Bundle
from tests.reliability.util import assert_one_line_error, run_main
from tests.user_folder import user_folder

PLAIN_CONV = """
    def make_generator():
        return make()

    def plain_conv():
        # a lone Conv2d runs unbatched (C x H x W) too, and returns a 3-D tensor
        return nn.Conv2d(3, 3, 3, 1, 1)
"""
SR = ["--model", "sr_net:make_generator", "--input-shape", "1x3x8x8", "--checkpoint", "sr.safetensors"]
RANGES = ["--input-range", "0,1", "--output-range", "0,1"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The newcomer's folder: sr_net.py, its weights and a folder `photos` of 12 images."""
    return user_folder(tmp_path, monkeypatch, "sr_net", PLAIN_CONV, checkpoint="sr.safetensors")


def test_data_naming_a_folder_without_the_prefix_reads_it_as_one_and_says_so(work):
    outcome = run_main("build", "--precision", "fp32", *SR, "--data", "photos", *RANGES, "--eval-samples", "4", "--out", "b")
    assert outcome.exit_code == 0, outcome
    assert "gencompress: --data photos: reading it as folder:photos" in outcome.stderr.splitlines()
    data = Bundle.load(work / "b").manifest["data"]
    assert data["kind"] == "folder" and data["path"] == str(work / "photos") and data["count"] == 12


def test_data_naming_neither_a_folder_nor_a_spec_is_still_refused(work):
    assert_one_line_error(run_main("build", "--precision", "fp32", *SR, "--data", "fotos", *RANGES, "--out", "b"),
                          "--data 'fotos' is not folder:PATH, npz:PATH[#key] or package.module:callable")
    assert not (work / "b").exists()


@pytest.mark.parametrize("spec, example", [("./sr_net.py", "sr_net:make"), ("elsewhere/gan.py", "gan:make_generator")])
def test_a_python_file_as_model_is_answered_with_the_import_spec_that_names_it(work, spec, example):
    outcome = run_main("build", "--precision", "fp32", "--model", spec, "--input-shape", "1x3x8x8", "--out", "b")
    assert_one_line_error(outcome, f"--model {spec} is a Python file: use package.module:callable, e.g. {example}, run from its folder")
    assert "state-dict" not in outcome.stderr and not (work / "b").exists()


@pytest.mark.parametrize("model", ["sr_net:make_generator", "sr_net:plain_conv"])
def test_an_input_shape_without_the_batch_dimension_says_so(work, model):
    outcome = run_main("build", "--precision", "fp32", "--model", model, "--input-shape", "3x8x8", "--out", "b")
    assert_one_line_error(outcome, "input shape 3x8x8 does not fit the model: the shape needs a leading batch dimension, "
                                   "e.g. --input-shape 1x3x8x8")
    assert "3D" not in outcome.stderr and not (work / "b").exists()


def test_a_three_dimension_shape_that_is_not_a_forgotten_batch_keeps_the_models_error(work):
    outcome = run_main("build", "--precision", "fp32", "--model", "sr_net:make_generator", "--input-shape", "5x8x8", "--out", "b")
    assert_one_line_error(outcome, "input shape 5x8x8 does not fit the model: ")  # 1x5x8x8 fails too: 5 channels, not 3
    assert "batch dimension" not in outcome.stderr


class _Wrapped(torch.nn.Module):
    """A diffusers-style output (an object with `.sample`) or a tuple, not the image tensor."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.conv = kind, torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return (y, y) if self.kind == "tuple" else SimpleNamespace(sample=y)


def decoder_output():
    return _Wrapped("sample")


def tuple_output():
    return _Wrapped("tuple")


@pytest.mark.parametrize("factory, hint", [("decoder_output", "returns `.sample`"), ("tuple_output", "returns the first item")])
def test_a_model_returning_an_output_object_or_a_tuple_is_told_how_to_wrap_it(work, factory, hint):
    outcome = run_main("build", "--precision", "fp32", "--model", f"tests.test_newcomer_trips:{factory}", "--input-shape", "1x3x8x8",
                       "--out", "b")
    assert_one_line_error(outcome, "model output is not an N x C x H x W image tensor")
    assert hint in outcome.stderr
