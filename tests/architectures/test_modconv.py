"""Issue 22, item 4: StyleGAN2's fused modulated convolutions (per-sample weights), as the ports
write them, rewritten into the shared-weight form (compress/modconv.py): equal to the original
in float64, exportable with a dynamic batch, saved under the user's own keys, refused by name
where the check fails, left alone (and refused at export by name) where unrecognised."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gencompress.benchmarks import architectures as A
from gencompress.cli.pipeline import BuildConfig, build
from gencompress.compress import modconv
from gencompress.compress.modconv import TOLERANCE, shared_weight_form
from gencompress.errors import GencompressError
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import OrtRunner, SessionFromOnnx, run_batches

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import stylegan_ports as P  # noqa: E402

PORTS = {  # builder, z size, the form each of its modulated convs is recognised as, how many
    "gencompress": (A.stylegan2_like_small, 32, "gencompress", 9),
    "rosinality": (P.rosinality_small, 16, "rosinality", 8),
    "nvlabs": (P.nvlabs_small, 16, "stylegan2-ada (NVlabs), non-fused path", 10),
}


def _original_output(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    kwargs = {"noise_mode": "const"} if isinstance(model, P.NVlabsGenerator) else {}  # the noise the rewrite fixes
    with torch.no_grad():
        return model(z, **kwargs)


@pytest.mark.parametrize("port", PORTS)
def test_rewritten_generator_equals_the_original_in_float64(port):
    builder, z_dim, form, count = PORTS[port]
    model = builder()
    original = copy.deepcopy(model)
    records = shared_weight_form(model, torch.randn(2, z_dim))
    assert len(records) == count and {r["form"] for r in records} == {form}
    assert all(r["float64_max_rel_diff"] <= TOLERANCE for r in records)
    z = torch.randn(3, z_dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    want = _original_output(copy.deepcopy(original).double(), z)
    with torch.no_grad():
        got = copy.deepcopy(model).double()(z)
    assert float((got - want).abs().max()) <= TOLERANCE * max(1.0, float(want.abs().max()))
    # Saved under the user's keys and shapes: the rewritten model's weights load into their class, and back.
    saved, theirs = model.state_dict(), original.state_dict()
    assert set(saved) == set(theirs) and all(saved[k].shape == theirs[k].shape for k in theirs)
    reloaded = copy.deepcopy(original)
    reloaded.load_state_dict(saved)
    copy.deepcopy(model).load_state_dict(theirs)
    z32 = z.float()
    assert torch.allclose(_original_output(reloaded, z32), _original_output(original, z32), atol=1e-6)


@pytest.mark.parametrize("port", PORTS)
def test_rewritten_generator_exports_with_a_dynamic_batch(port, tmp_path):
    builder, z_dim, _, _ = PORTS[port]
    model = builder()
    shared_weight_form(model, torch.randn(2, z_dim))
    path = export_module(model, (z_dim,), tmp_path / "g.onnx", OnnxConfig())
    z = np.random.default_rng(0).standard_normal((3, z_dim)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(z)).numpy()
    got = run_batches(OrtRunner(SessionFromOnnx(path, 2)), z, 3)
    assert np.abs(got - want).max() <= 1e-4


def test_a_rewrite_that_fails_the_float64_check_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(modconv, "DEMOD_EPS", 1e-2)  # a wrong demodulation: the check must catch it
    with pytest.raises(GencompressError, match=r"cannot rewrite layers\.0\.0\.conv \(ModulatedConv2d\) .* differs from the original"):
        shared_weight_form(A.stylegan2_like_small(), torch.randn(2, 32))


class Hypernet(nn.Module):
    """A per-sample conv no form recognises: its kernel comes from a hypernetwork."""

    def __init__(self):
        super().__init__()
        self.hyper = nn.Linear(8, 3 * 3 * 3 * 3)

    def forward(self, z):
        n = z.shape[0]
        x = torch.ones(1, n * 3, 8, 8)
        out = F.conv2d(x, self.hyper(z).reshape(n * 3, 3, 3, 3), padding=1, groups=n)
        return out.reshape(n, 3, 8, 8)


def test_an_unrecognised_per_sample_conv_is_left_alone_and_refused_at_export_by_name(tmp_path):
    model = nn.Sequential(Hypernet())
    assert shared_weight_form(model, torch.randn(2, 8)) == []
    with pytest.raises(GencompressError, match=r"cannot export 0 \(Hypernet\) to ONNX: .*fused_modconv=False"):
        export_module(model, (8,), tmp_path / "h.onnx", OnnxConfig())


@pytest.mark.slow
def test_rosinality_generator_builds_int8_for_gpu_unedited(tmp_path):
    cfg = BuildConfig(model="stylegan_ports:rosinality_small", input_shape=(1, 16), out=str(tmp_path / "b"), target="gpu",
                      calib_samples=8, eval_samples=16, latency_batches=(2,), latency_iters=3, latency_warmup=1, bench_seconds=0.2,
                      progress=False)
    summary = build(cfg)
    assert summary["quality"]["meets_floor"]
    assert "int8" in summary["layer_precision"].values()
    assert summary["export_checks"]["qdq_lint"]["passed"]


def hypernet() -> nn.Module:
    """The unrecognised per-sample conv as a --model spec (test_real_architectures.py)."""
    torch.manual_seed(0)
    return nn.Sequential(Hypernet()).eval()


@pytest.mark.slow
def test_nvlabs_generator_builds_int8_for_cpu_unedited(tmp_path):
    """Its layers on their own non-fused path, noise from noise_const; its FullyConnectedLayer's 1 x N
    Gemm bias flattened for ONNX Runtime's quantiser (export/onnx_quant.unshare_biases)."""
    cfg = BuildConfig(model="stylegan_ports:nvlabs_small", input_shape=(1, 16), out=str(tmp_path / "b"), target="cpu",
                      latency_batches=(2,), latency_iters=3, latency_warmup=1, bench_seconds=0.2, progress=False, cpu_runtime="onnxruntime")
    summary = build(cfg)
    assert summary["quality"]["meets_floor"]
    assert "int8" in summary["layer_precision"].values()


def test_nvlabs_generator_for_gpu_says_in_one_line_that_modelopt_has_no_module_to_quantise(tmp_path, monkeypatch):
    """Its layers convolve functionally with their own parameters (their non-fused path), and its
    FullyConnectedLayer is no nn.Linear: modelopt finds nothing (it raised a multi-line RuntimeError)."""
    from tests.helpers import run_cli

    monkeypatch.syspath_prepend(str(HERE))
    result = run_cli("build", "--precision", "int8", "--target", "gpu", "--model", "stylegan_ports:nvlabs_small", "--input-shape", "1x16",
                     "--out", tmp_path / "b")
    assert result.exit_code == 2 and not (tmp_path / "b").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Conv2d/ConvTranspose2d/Linear module for modelopt to quantise" in lines[0], result.stderr
