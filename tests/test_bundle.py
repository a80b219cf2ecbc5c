"""The bundle: round trip, atomic writes, hash verification."""
from __future__ import annotations

import json

import pytest
import torch

from gencompress import zoo
from gencompress.atomic import atomic_dir
from gencompress.bundle import Bundle
from gencompress.errors import GencompressError
from gencompress.loading import model_from_bundle
from gencompress.train.pretrained import zoo_bundle


def _bundle(tmp_path, name="dcgan"):
    torch.manual_seed(0)
    return zoo_bundle(name, zoo.build(name)).save(tmp_path / "b")


def test_round_trip_gives_the_same_model_outputs(tmp_path):
    saved = _bundle(tmp_path)
    loaded = Bundle.load(saved.path)
    assert loaded.manifest["architecture"] == {"kind": "zoo", "name": "dcgan", "kwargs": {"nz": 100, "ngf": 32, "nc": 1}}
    assert loaded.input_shape == (100, 1, 1)
    rebuilt = model_from_bundle(loaded)
    z = torch.randn(4, 100, 1, 1)
    with torch.no_grad():
        assert torch.equal(saved.model(z), rebuilt(z))
    # every file listed with a 64-hex sha256, and weights among them
    assert set(loaded.manifest["files"]) == {"weights.safetensors"}
    assert all(len(h) == 64 for h in loaded.manifest["files"].values())


def test_failed_write_leaves_the_previous_bundle_whole(tmp_path):
    saved = _bundle(tmp_path)
    before = (saved.path / "manifest.json").read_text()
    with pytest.raises(RuntimeError):
        with atomic_dir(saved.path) as tmp:
            (tmp / "manifest.json").write_text("{half")
            raise RuntimeError("crash mid-write")
    assert (saved.path / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temp folder left behind
    Bundle.load(saved.path)  # still verifies


def test_save_replaces_an_existing_bundle(tmp_path):
    first = _bundle(tmp_path)
    torch.manual_seed(1)
    second = zoo_bundle("upsample_conv", zoo.build("upsample_conv")).save(first.path)
    assert Bundle.load(second.path).manifest["architecture"]["name"] == "upsample_conv"


def test_tampered_weights_are_refused(tmp_path):
    saved = _bundle(tmp_path)
    weights = saved.path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(GencompressError, match="does not match its hash"):
        Bundle.load(saved.path)


def test_unknown_schema_version_is_refused(tmp_path):
    saved = _bundle(tmp_path)
    manifest = json.loads((saved.path / "manifest.json").read_text())
    manifest["schema_version"] = 999
    (saved.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GencompressError, match="schema version 999"):
        Bundle.load(saved.path)


def test_recipe_steps_are_recorded_through_the_bundle():
    """Stages append to the recipe with Bundle.record and read it with last_step/recipe only."""
    import re
    from pathlib import Path

    from gencompress.bundle import Bundle, new_manifest

    bundle = Bundle(new_manifest(architecture={"kind": "zoo", "name": "dcgan", "kwargs": {}},
                                 input_spec={"name": "latent", "shape": [4], "dtype": "float32", "distribution": "normal"},
                                 output_spec={"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"}), None)
    step = bundle.record({"step": "quantize", "calibrator": "max"})
    assert bundle.recipe[-1] is step and bundle.last_step("quantize") == step
    root = Path(__file__).resolve().parent.parent
    hand = [f"{path.relative_to(root)}:{n}" for folder in ("gencompress", "export", "compress", "benchmarks", "train")
            for path in (root / folder).rglob("*.py") if path.name != "bundle.py"
            for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r'manifest\["recipe"\]', line)]
    assert hand == []
