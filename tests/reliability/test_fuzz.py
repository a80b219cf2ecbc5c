"""Fuzzing: whatever the input, the answer is a result or a clean GencompressError.

Hypothesis runs derandomized (the same examples every run; tests/conftest.py's "ci" profile
and FUZZ below) and without its example database, so a failure reproduces, CI's outcome never
depends on the draw, and nothing is written to the working tree. Inputs hypothesis once found
are pinned with @example. `HYPOTHESIS_PROFILE=explore` draws fresh examples locally.
"""
from __future__ import annotations

import copy
import json
import random
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gencompress.bundle import SCHEMA_VERSION, parse_manifest
from gencompress.errors import GencompressError
from gencompress.loading import describe_shape, load_spec, parse_shape
from tests.reliability.util import run_main

# derandomize, database and deadline come from the loaded profile (tests/conftest.py: "ci").
FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)

VALID = {
    "schema_version": SCHEMA_VERSION,
    "hash_algorithm": "sha256",
    "gencompress_version": "0.1.0",
    "created": "2026-01-01T00:00:00+00:00",
    "architecture": {"kind": "zoo", "name": "dcgan", "kwargs": {"nz": 100, "ngf": 32, "nc": 1}},
    "input": {"name": "latent", "shape": [100, 1, 1], "dtype": "float32", "distribution": "normal"},
    "output": {"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"},
    "precision": {},
    "recipe": [],
    "metrics": {},
    "files": {"weights.safetensors": "a" * 64},
}


def _parse_or_clean_error(text):
    try:
        manifest = parse_manifest(text)
    except GencompressError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert manifest["schema_version"] == SCHEMA_VERSION
    return manifest


def test_the_valid_manifest_parses():
    assert _parse_or_clean_error(json.dumps(VALID)) == VALID


@pytest.mark.parametrize("where, value", [(("input", "shape"), [1.0, 32, 32]), (("input", "shape"), [100, True, 1]),
                                          (("output", "shape"), [1, 32.0, 32])])
def test_manifest_refuses_non_integer_dimensions(where, value):
    manifest = copy.deepcopy(VALID)
    manifest[where[0]][where[1]] = value
    with pytest.raises(GencompressError, match=f"invalid manifest at {where[0]}/{where[1]}/"):
        parse_manifest(json.dumps(manifest))


@FUZZ
@given(JSON)
def test_manifest_parsing_any_json(value):
    _parse_or_clean_error(json.dumps(value))


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_manifest_parsing_any_bytes(data):
    _parse_or_clean_error(data)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


ALL_PATHS = [p for p in _paths(VALID) if p]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), JSON | st.just("__delete__")), min_size=1, max_size=3))
@example([(("input", "shape", 0), 1.0)])  # found by hypothesis on a fresh clone: a float dimension parsed
@example([(("input", "shape", 1), True)])  # bool is an int subclass in Python, not in a shape
@example([(("output", "shape"), [2.5])])
def test_manifest_parsing_mutated_valid_manifests(edits):
    """A valid manifest with parts replaced or deleted: the near misses a schema must catch."""
    manifest = copy.deepcopy(VALID)
    for path, value in edits:
        parent = manifest
        try:
            for key in path[:-1]:
                parent = parent[key]
            if value == "__delete__":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this path
    result = _parse_or_clean_error(json.dumps(manifest))
    if result is not None:  # whatever got through is well formed where code relies on it
        assert all(type(d) is int and d >= 1 for d in result["input"]["shape"])
        assert all(type(d) is int and d >= 1 for d in result["output"].get("shape", []))
        assert result["architecture"]["kind"] in ("zoo", "import", "torchscript", "onnx")
        assert all(".." not in name.split("/") and not name.startswith("/") for name in result["files"])


# --- input shapes ------------------------------------------------------------------------


@FUZZ
@given(st.text(alphabet=string.digits + "xX, -+_.e\t\n" + string.ascii_letters, max_size=30) | st.text(max_size=30))
def test_parse_shape_any_text(text):
    try:
        dims = parse_shape(text)
    except GencompressError as exc:
        assert "input shape" in str(exc)
        return
    assert 1 <= len(dims) <= 6 and all(isinstance(d, int) and d > 0 for d in dims)


@FUZZ
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=6))
def test_parse_shape_round_trips(dims):
    assert parse_shape(describe_shape(dims)) == tuple(dims)


# --- CLI option parsing ----------------------------------------------------------------

BUILD_OPTIONS = {
    "--model": st.sampled_from(["dcgan", "missing.onnx", "x:y", "", "a b", "../..", "-"]),
    "--input-shape": st.text(max_size=12) | st.sampled_from(["1x100x1x1", "0", "1x-1", "9" * 30]),
    "--checkpoint": st.sampled_from(["", "nope.pt", "/"]),
    "--calib-samples": st.sampled_from(["0", "-5", "1", "3.5", "1e3", "", "99999999999999999999"]),
    "--target": st.sampled_from(["gpu", "cpu", "", "GPU"]),
    "--deconv-weight-axis": st.sampled_from(["0", "1", "2", "-1", ""]),
    "--out": st.sampled_from(["o", "", "/", "a\x00b"]),
}
FLAGS = ["--precision", "--json", "--trust-pickle", "--random-init", "--no-quality-floor", "--bogus", "-h"]


@st.composite
def build_argv(draw):
    argv = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(BUILD_OPTIONS)))
            argv += [name] + ([draw(BUILD_OPTIONS[name])] if draw(st.integers(0, 9)) else [])  # sometimes no value
        else:
            argv.append(draw(st.sampled_from(FLAGS)))
    return argv


@FUZZ
@given(argv=build_argv())
def test_build_option_parsing(argv):
    """Options reach BuildConfig or fail as usage errors; the stage itself is stubbed out."""
    import gencompress.cli.build_cmd as build_cmd

    seen = []

    def fake_build(cfg):
        cfg.validate()
        seen.append(cfg)
        return {"out": cfg.out, "precision": cfg.precision, "latency": [], "quality": {"psnr_db": 50.0, "reference": "stub"}}

    original = build_cmd.run_build
    build_cmd.run_build = fake_build
    try:
        outcome = run_main("build", *argv)
    finally:
        build_cmd.run_build = original
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, outcome
    if outcome.exit_code == 0:
        assert seen or "-h" in argv, outcome
        if seen:
            cfg = seen[0]
            assert (cfg.calib_samples is None or cfg.calib_samples >= 1) and cfg.precision in ("int8", "fp16", "fp32")
            assert cfg.input_shape is None or all(d > 0 for d in cfg.input_shape)
    else:
        assert outcome.exit_code == 2, outcome
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gencompress: error: "), outcome


# --- ONNX mutation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> bytes:
    from gencompress.export.onnx_export import OnnxConfig, export_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4, 1, 0), torch.nn.BatchNorm2d(2), torch.nn.Tanh()).eval()
    path = tmp_path_factory.mktemp("onnx") / "ok.onnx"
    export_module(model, (4, 1, 1), path, OnnxConfig())
    return path.read_bytes()


def _use(path: Path) -> str:
    """What `build` does with an ONNX file before compressing it: validate, load, run, check."""
    from gencompress.export.runners import OrtRunner, SessionFromOnnx, run_batches

    bundle = load_spec(str(path))
    runner = OrtRunner(SessionFromOnnx(bundle.file("source.onnx"), threads=1))
    out = run_batches(runner, np.zeros((2, *bundle.input_shape), np.float32))
    if out.ndim != 4 or not np.isfinite(out).all():
        raise GencompressError("model output is not a finite N x C x H x W image")
    return "ok"


def test_onnx_byte_flips_end_in_a_result_or_a_clean_error(small_onnx, tmp_path):
    assert _use(_write(tmp_path / "orig.onnx", small_onnx)) == "ok"
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for i in range(120):
        data = bytearray(small_onnx)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if i % 5 == 0:
            data = data[: rng.randrange(len(data))]  # truncation too
        try:
            outcomes[_use(_write(tmp_path / f"m{i}.onnx", bytes(data)))] += 1
        except GencompressError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] >= 60  # most mutants are broken, and each was caught cleanly


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
