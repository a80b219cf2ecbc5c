"""The trained suite: the shipped photos (gencompress/photos.py) and the real layouts trained on
them (gencompress.benchmarks.suite), as recorded in benchmarks/results/trained_suite.json."""
from __future__ import annotations

import dataclasses
import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gencompress import photos
from gencompress.benchmarks import architectures as arch
from gencompress.benchmarks import suite
from gencompress.errors import GencompressError

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "trained_suite.json"


def test_the_split_is_disjoint_complete_and_fixed():
    assert not set(photos.TRAIN) & set(photos.HELD_OUT)
    assert set(photos.TRAIN) | set(photos.HELD_OUT) == set(photos.PHOTOS)
    assert {"motorcycle_left", "motorcycle_right"} <= set(photos.TRAIN)  # one scene, one side
    first, again = photos.held_out_crops(64, per_side=2), photos.held_out_crops(64, per_side=2)
    assert first.shape == (4 * len(photos.HELD_OUT), 3, 64, 64) and torch.equal(first, again)
    train = photos.load_split("train")
    a = photos.random_crops(train, 6, 32, torch.Generator().manual_seed(3))
    b = photos.random_crops(train, 6, 32, torch.Generator().manual_seed(3))
    c = photos.random_crops(train, 6, 32, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_photo_loads_with_no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in photos.PHOTOS:
        image = photos.load_photo(name)
        assert image.shape[0] == 3 and min(image.shape[1:]) >= 256, name  # every layout's full size fits
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.05, name


def test_missing_scikit_image_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage.data now raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(GencompressError, match="scikit-image") as err:
        photos.load_photo("astronaut")
    assert "\n" not in str(err.value)
    with pytest.raises(GencompressError, match="no shipped photo"):
        photos.load_photo("lena")


def test_held_out_crops_written_as_pngs_round_trip(tmp_path):
    from PIL import Image

    paths = photos.write_held_out_crops(tmp_path / "crops", size=48, per_side=2)
    crops = photos.held_out_crops(48, per_side=2)
    assert len(paths) == len(crops)
    back = torch.from_numpy(np.asarray(Image.open(paths[5]), dtype=np.float32) / 255).permute(2, 0, 1)
    assert float((back - crops[5]).abs().max()) <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    with pytest.raises(GencompressError, match="not an empty folder"):
        photos.write_held_out_crops(tmp_path / "crops", size=48)  # nothing of the user's is overwritten


def test_noisy_crops_carry_the_seeded_noise(tmp_path):
    from PIL import Image

    clean = photos.held_out_crops(48, per_side=1)
    paths = photos.write_held_out_crops(tmp_path / "noisy", size=48, per_side=1, noise_sigma=0.2, seed=5)
    noisy = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255).permute(2, 0, 1) for p in paths])
    residual = (noisy - clean)[(clean > 0.3) & (clean < 0.7)]  # away from the clip at 0 and 1
    assert abs(float(residual.std()) - 0.2) < 0.02 and abs(float(residual.mean())) < 0.01
    again = photos.write_held_out_crops(tmp_path / "again", size=48, per_side=1, noise_sigma=0.2, seed=5)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))


def test_photo_inputs_are_what_each_generator_takes():
    sr = suite.photo_inputs("sr_compact", 3, seed=7, size=64)
    assert sr.shape == (3, 3, 16, 16) and 0 <= float(sr.min()) and float(sr.max()) <= 1
    assert torch.equal(sr, suite.photo_inputs("sr_compact", 3, seed=7, size=64))
    assert not torch.equal(sr, suite.photo_inputs("sr_compact", 3, seed=7, size=64, split="train"))
    noisy = suite.photo_inputs("unet_pix2pix", 2, seed=7, size=64)
    assert noisy.shape == (2, 3, 64, 64) and -1 <= float(noisy.min()) and float(noisy.max()) <= 1
    latents = suite.photo_inputs("taesd", 2, seed=7, size=64)  # through the shipped trained encoder
    assert latents.shape == (2, 4, 8, 8) and torch.isfinite(latents).all()


@pytest.mark.parametrize("name, build, crop", [
    ("sr_compact", lambda: arch.sr_compact(num_feat=8, num_conv=1), 32),
    ("unet_pix2pix", lambda: arch.unet_pix2pix(ngf=8, num_downs=5), 32),
])
def test_a_few_steps_at_a_tiny_width_lower_the_loss(name, build, crop):
    tiny = dataclasses.replace(suite.recipe(name), build=build, crop=crop, batch=4, lr=2e-3)
    _, record = suite.train_recipe(tiny, steps=30, progress=False)
    curve = record["loss_curve"]
    assert len(curve) == 10 and curve[-1] < 0.8 * curve[0], curve


def test_a_damaged_weights_file_is_refused(tmp_path):
    model = arch.sr_compact(num_feat=4, num_conv=1)
    path = suite.save_weights("sr_compact", model, tmp_path / "w" / "weights.safetensors")
    assert set(suite._verified_state(path)) == set(model.state_dict())
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert suite._verified_state(path) is None


def _recorded() -> dict:
    return json.loads(RESULTS.read_text())["models"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sr_compact", "taesd"])
def test_shipped_weights_load_and_reach_their_recorded_quality(name):
    entry = _recorded()[name]
    assert entry["weights"]["shipped"] and suite.packaged_path(name).parent.name == entry["weights"]["folder"]
    state = suite._verified_state(suite.packaged_path(name))  # present and matching its SHA-256
    assert state is not None
    torch.set_num_threads(2)
    quality = suite.judge(name, suite.trained(name, progress=False))
    for key, recorded in entry["quality"].items():
        if key.endswith("_db"):
            assert quality[key] == pytest.approx(recorded, abs=0.05), key  # same crops, same weights: float noise only
    # visibly trained: better than its own initialisation on photos it never saw, by a margin
    key, margin = {"sr_compact": ("psnr_db", 0.5), "taesd": ("reconstruction_psnr_db", 5.0)}[name]
    assert quality[key] > entry["quality_at_init"][key] + margin


def test_trained_entry_point_runs_at_full_size():
    if not suite._verified_state(suite.packaged_path("sr_compact")):
        pytest.skip("the trained SR net is not shipped in this checkout")
    model = suite.sr_compact_trained()
    with torch.no_grad():
        out = model(photos.held_out_crops(64, per_side=1)[:1])
    assert out.shape == (1, 3, 256, 256)


def test_a_trained_entry_point_is_not_reported_as_random_weights():
    """The build warned "random weights ... measures an untrained model" for every import spec;
    a suite model names its trained weights, and the load step records them instead."""
    from gencompress.loading import load_spec, weight_warnings

    if not suite._verified_state(suite.packaged_path("sr_compact")):
        pytest.skip("the trained SR net is not shipped in this checkout")
    trained = load_spec("gencompress.benchmarks.suite:sr_compact_trained", (1, 3, 64, 64))
    load = [s for s in trained.manifest["recipe"] if s["step"] == "load"]
    assert load and load[-1]["weights"] == "built-in" and "sr_compact-photos" in load[-1]["source"]
    assert not weight_warnings(trained.manifest)
    random = load_spec("gencompress.benchmarks.architectures:sr_compact_small", (1, 3, 8, 8))
    assert weight_warnings(random.manifest) and "random weights" in weight_warnings(random.manifest)[0]


def test_every_layout_is_recorded_trained_with_the_recipe_that_trains_it_on_first_use():
    """The JSON's entry of each suite model is what `trained(name)` makes: same steps, batch, crop and
    weights folder; and each is visibly better than at initialisation on the held-out photos."""
    recorded = _recorded()
    assert set(recorded) == set(suite.RECIPES)
    for name, entry in recorded.items():
        r = suite.recipe(name)
        assert (entry["steps"], entry["batch"], entry["crop"]) == (r.steps, r.batch, r.crop), name
        assert entry["weights"]["folder"] == suite.folder_name(name), name
        assert entry["weights"]["shipped"] == (entry["weights"]["bytes"] <= suite.SHIP_LIMIT), name
    assert recorded["stylegan2"]["quality"]["fid"] < 0.8 * recorded["stylegan2"]["quality_at_init"]["fid"]
    assert recorded["unet_pix2pix"]["quality"]["psnr_db"] > recorded["unet_pix2pix"]["quality"]["noisy_input_psnr_db"] + 3
    assert recorded["sr_compact"]["quality"]["psnr_db"] > recorded["sr_compact"]["quality"]["bicubic_psnr_db"]
    for name in ("taesd", "sd_vae"):
        entry = recorded[name]
        assert entry["quality"]["reconstruction_psnr_db"] > entry["quality_at_init"]["reconstruction_psnr_db"] + 5, name
