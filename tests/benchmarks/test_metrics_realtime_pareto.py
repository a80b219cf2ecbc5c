"""SSIM, real-time verdicts and the Pareto front against hand-worked cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gencompress.benchmarks.pareto import pareto_front
from gencompress.benchmarks.quality import MIN_STABLE_FID_SAMPLES, quality_vs_data, sample_warning
from gencompress.benchmarks.realtime import frame_budget_ms, verdict
from gencompress.errors import GencompressError
from gencompress.metrics import ssim


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = np.full((1, 1, 16, 16), 0.2), np.full((1, 1, 16, 16), -0.3)
    c1 = (0.01 * 2.0) ** 2  # data range 2 for images in [-1, 1]
    expected = (2 * 0.2 * -0.3 + c1) / (0.2**2 + 0.3**2 + c1)  # contrast/structure term is c2/c2 = 1
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 1, 32, 32))
    assert ssim(x, x) == pytest.approx(1.0)
    slight, heavy = ssim(x, x + 0.05 * rng.standard_normal(x.shape)), ssim(x, x + 0.5 * rng.standard_normal(x.shape))
    assert 1.0 > slight > heavy


def test_ssim_rejects_different_shapes():
    with pytest.raises(ValueError):
        ssim(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 4)))


def test_frame_budget_from_fps_or_budget():
    assert frame_budget_ms(30, None) == pytest.approx(1000 / 30)
    assert frame_budget_ms(None, 12.5) == 12.5
    with pytest.raises(GencompressError):
        frame_budget_ms(None, None)


def test_verdict_compares_p99_with_batch_times_frame_budget():
    rows = [
        {"backend": "ort", "batch": 1, "p99_ms": 30.0, "source": "measured"},
        {"backend": "ort", "batch": 1, "p99_ms": 40.0, "source": "measured"},
        {"backend": "roofline:jetson-orin-nano", "batch": 2, "p99_ms": 60.0, "source": "estimated"},
    ]
    v = verdict(rows, fps=30)
    assert [x["meets"] for x in v] == [True, False, True]  # 60 ms <= 2 x 33.3 ms
    assert v[2]["budget_ms"] == pytest.approx(2000 / 30)
    assert v[2]["verdict"] == "meets budget (estimated)" and v[1]["verdict"] == "misses budget (measured)"
    assert v[0]["headroom"] == pytest.approx((1000 / 30) / 30.0)


def test_pareto_front_hand_case():
    # (latency, quality): b dominates d (faster and better); c is slowest but best; a is fastest
    points = [(1.0, 20.0), (2.0, 30.0), (5.0, 40.0), (3.0, 25.0), (2.0, None), (float("nan"), 50.0)]
    assert pareto_front(points) == [0, 1, 2]


def test_pareto_front_keeps_one_of_equal_points_and_drops_ties_dominated():
    assert pareto_front([(1.0, 10.0), (1.0, 10.0)]) == [0, 1]  # neither strictly better
    assert pareto_front([(1.0, 10.0), (1.0, 9.0)]) == [0]


def test_fid_sample_warning_threshold():
    assert sample_warning(MIN_STABLE_FID_SAMPLES) is None
    assert "biased" in sample_warning(100)


def test_quality_vs_data_says_why_without_known_data():
    from gencompress import zoo
    from gencompress.train.pretrained import zoo_bundle

    bundle = zoo_bundle("dcgan", zoo.build("dcgan", ngf=8), ngf=8)  # never trained: no data to compare with
    out = quality_vs_data(np.zeros((10, 1, 32, 32), np.float32), bundle)
    assert out["available"] is False and "no real data" in out["message"] and out["samples"] == 10
    assert math.isfinite(out["samples"])


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 1, 11, 13), (3, 2, 8, 8), (2, 3, 64, 48), (2, 2, 6, 6)])
def test_ssim_equals_torchmetrics(shape):
    """The separable form computes torchmetrics' SSIM (Gaussian window, reflection padding)."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    y = (x + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    planes = (-1, 1, *shape[-2:])
    expected = float(structural_similarity_index_measure(torch.from_numpy(y).reshape(planes), torch.from_numpy(x).reshape(planes),
                                                         sigma=1.5, kernel_size=11, data_range=2.0))
    assert ssim(x, y) == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_ssim_of_many_large_planes_stays_in_memory():
    """168 planes of 256x256 (56 RGB images of a 256-px decoder) asked torchmetrics for 53 GB."""
    import subprocess
    import sys

    probe = ("import numpy as np, resource; from gencompress.metrics import ssim\n"
             "rng = np.random.default_rng(0)\n"
             "x = rng.standard_normal((56, 3, 256, 256)).astype(np.float32)\n"
             "y = x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "assert 0.9 < ssim(x, y) < 1.0\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip()) < 400  # MiB above the inputs: two float64 copies (176 MiB) and the chunk's maps
