"""scripts/real_architectures.py: each trained layout is built on real inputs from the held-out
photos, and its rows are judged against the limits of issue 22. The builds themselves are the
script's to run; these tests check what it feeds them and how it reads their rows."""
from __future__ import annotations

import numpy as np
from PIL import Image

from tests.helpers import load_script

def _script():
    return load_script("real_architectures")


def test_image_layouts_build_on_held_out_photo_crops_with_their_ranges(tmp_path):
    script = _script()
    args, made_by = script.build_data("sr_compact", tmp_path / "sr")
    assert args[:2] == ["--data", f"folder:{tmp_path / 'sr' / 'crops'}"] and args[2:] == ["--input-range", "0,1", "--output-range", "0,1"]
    crops = sorted((tmp_path / "sr" / "crops").glob("*.png"))
    assert len(crops) == 256 and Image.open(crops[0]).size == (64, 64) and "--size 64" in made_by
    args, made_by = script.build_data("unet_pix2pix", tmp_path / "unet")
    assert "--input-range=-1,1" in args and "--noise 0.2" in made_by
    assert script.build_data("stylegan2_like", tmp_path / "gan") == ([], "the build's default inputs")


def test_supplied_inputs_are_seeded_held_out_crops_recorded_by_hash():
    script = _script()
    x, record = script.supplied_inputs("sr_compact")
    again, _ = script.supplied_inputs("sr_compact")
    assert x.shape == (script.SUPPLIED_SAMPLES, 3, 64, 64) and np.array_equal(x, again)
    assert record["samples"] == script.SUPPLIED_SAMPLES and len(record["sha256"]) == 64 and "held-out" in record["source"]


def test_the_u_net_and_sd_vae_get_4_gb_the_others_2_5():
    script = _script()
    assert script.limits("unet_pix2pix")["peak_rss_mb"] == script.limits("sd_vae_decoder")["peak_rss_mb"] == round(4e9 / 2**20, 1)
    assert script.limits("taesd_decoder")["peak_rss_mb"] == round(2.5e9 / 2**20, 1)
    assert script.limits("sr_compact")["wall_seconds"] == 600.0
