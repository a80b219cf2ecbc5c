"""Verification on every export: the ONNX, run by ONNX Runtime, against the PyTorch model.

Both see the same fixed latents (drawn with a fixed seed, like the model's own inputs).
We report PSNR, max abs error and cosine similarity, and, Polygraphy-style, the
tolerance used, the tolerance that would have been needed and PASSED/FAILED. When it
fails, `layer_errors` localises the mismatch: the relative error at each Conv /
ConvTranspose / Gemm output, PyTorch vs ONNX Runtime, on the same inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gencompress.data import draw_inputs
from gencompress.errors import VerificationError
from gencompress.metrics import fidelity

from .runners import OrtRunner, SessionFromOnnx, TorchRunner, run_and_close, run_batches


@dataclass
class VerifyConfig:
    min_psnr: float = 40.0
    samples: int = 16
    seed: int = 0
    batch: int = 8  # run in batches: exercises the dynamic batch axis too
    threads: int = 2
    # "disable": ONNX Runtime runs each Q/DQ pair as written (the arithmetic TensorRT's explicit
    # quantisation promises). With its CPU fusions on, ORT swaps in its own integer kernels, which
    # on the SD-VAE decoder layout (GroupNorm, SiLU, attention) lost 8 dB against the very graph
    # run as written (27 vs 35 dB): a CPU-runtime matter, not an export error.
    optimization: str = "disable"


def compare(model: nn.Module, onnx_path, input_shape, distribution: str | dict, cfg: VerifyConfig,
            inputs: np.ndarray | None = None, data_range: float = 2.0) -> tuple[dict, np.ndarray]:
    """Fidelity of ONNX Runtime's output to PyTorch's on fixed latents, or on `inputs` (the
    user's evaluation data); PSNR's peak is the output range's width. (result, inputs)."""
    if inputs is None:
        inputs = draw_inputs(tuple(input_shape), cfg.samples, distribution, cfg.seed).numpy()
    reference = run_batches(TorchRunner(model), inputs, cfg.batch)
    got = run_and_close(OrtRunner(SessionFromOnnx(onnx_path, cfg.threads, cfg.optimization)), inputs, cfg.batch)
    result = fidelity(reference, got, data_range)
    result.update({"samples": len(inputs), "psnr_peak": data_range, "seed": cfg.seed, "min_psnr": cfg.min_psnr,
                   "passed": bool(result["psnr_db"] >= cfg.min_psnr), "reference": "PyTorch",
                   "test": "ONNX Runtime (CPU)" + (", graph optimisations off" if cfg.optimization == "disable" else "")})
    return result, inputs


def format_result(result: dict, output_name: str = "image") -> str:
    """Polygraphy-style lines: tolerance used, tolerance needed, PASSED/FAILED."""
    psnr = result["psnr_db"]
    shown = "inf" if math.isinf(psnr) else f"{psnr:.2f}"
    lines = [
        f"[verify] {output_name}: {result['test']} vs {result['reference']}, {result['samples']} samples, seed {result['seed']}",
        f"    PSNR {shown} dB | tolerance used: --verify-psnr {result['min_psnr']:.2f} | needed to pass: --verify-psnr <= {shown}",
        f"    max abs error {result['max_abs_error']:.3g} (atol needed: {result['max_abs_error']:.3g}) | cosine {result['cosine']:.6f}",
        f"    {'PASSED' if result['passed'] else 'FAILED'}",
    ]
    return "\n".join(lines)


def require(result: dict, detail: str = "") -> None:
    """Raise VerificationError (exit 1) when the comparison fell under --verify-psnr."""
    if not result["passed"]:
        more = f"; {detail}" if detail else ""
        raise VerificationError(
            f"export verification FAILED: PSNR {result['psnr_db']:.2f} dB < --verify-psnr {result['min_psnr']:.2f} "
            f"(tolerance needed: --verify-psnr {math.floor(result['psnr_db'] * 100) / 100:.2f}; max abs error {result['max_abs_error']:.3g}){more}"
        )


# --- per-layer error --------------------------------------------------------------------

LAYER_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
ONNX_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _scope(node_name: str) -> str:
    """'/10/body/body.1/Conv' -> '10.body.1': the module a TorchScript-exported node came from.

    Each scope component is the module's name relative to its parent's parent
    ('body.1' inside '10/body'), so consecutive components overlap; we merge them.
    """
    parts = [p for p in node_name.split("/") if p][:-1]
    if not parts:
        return ""
    full, prev = parts[0], parts[0]
    for comp in parts[1:]:
        full += comp[len(prev):] if comp.startswith(prev + ".") else "." + comp
        prev = comp
    return full


def _onnx_layer_outputs(model_proto) -> dict[str, str]:
    """Module name -> ONNX output tensor of its Conv/ConvTranspose/Gemm node."""
    found = {}
    for node in model_proto.graph.node:
        if node.op_type in ONNX_LAYER_OPS and node.name:
            found.setdefault(_scope(node.name), node.output[0])
    return found


def _torch_layer_outputs(model: nn.Module, inputs: np.ndarray) -> dict[str, np.ndarray]:
    captured: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, LAYER_TYPES):
            def hook(_m, _i, out, name=name):
                captured[name] = out.detach().float().cpu().numpy()
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(inputs))
    finally:
        for h in hooks:
            h.remove()
    return captured


def layer_errors(model: nn.Module, onnx_path, inputs: np.ndarray) -> list[dict]:
    """Relative RMS error per layer output (PyTorch vs ONNX Runtime), in graph order."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(onnx_path))
    outputs = {k: v for k, v in _onnx_layer_outputs(proto).items()}
    torch_out = _torch_layer_outputs(model, inputs)
    wanted = [(name, tensor) for name, tensor in outputs.items() if name in torch_out]
    existing = {o.name for o in proto.graph.output}
    for _, tensor in wanted:
        if tensor not in existing:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    opts.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [t for _, t in wanted]
    values = session.run(names, {session.get_inputs()[0].name: inputs.astype(np.float32)})
    rows = []
    for (layer, tensor), got in zip(wanted, values):
        ref = torch_out[layer].astype(np.float64)
        diff = got.astype(np.float64) - ref
        rms_ref = float(np.sqrt(np.mean(ref**2))) or 1.0
        rows.append({"layer": layer, "onnx_tensor": tensor, "rel_rmse": float(np.sqrt(np.mean(diff**2))) / rms_ref,
                     "max_abs_error": float(np.max(np.abs(diff)))})
    return rows


def format_layer_errors(rows: list[dict]) -> str:
    lines = ["per-layer error (PyTorch vs ONNX Runtime, relative RMS):"]
    lines += [f"    {r['layer']:<24} {r['rel_rmse']:.3e}  (max abs {r['max_abs_error']:.3g})" for r in rows]
    return "\n".join(lines)
