"""Test helpers: run the CLI in-process and read its outcome."""
from __future__ import annotations

import hashlib
from pathlib import Path

from click.testing import CliRunner

from gencompress.cli import cli


def run_cli(*args: str):
    """Invoke `gencompress ARGS` through click's CliRunner; stderr kept apart from stdout."""
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, to prove a failed command changed nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def cpu_int8_graph(model_or_bundle, work: Path, input_shape=None, distribution: str = "normal", samples: int = 32,
                   deconv_form: str = "sub-pixel") -> tuple[Path, dict]:
    """ONNX Runtime's CPU integer form as `build --int8 --target cpu` makes it (the one entry
    point, export.apply_precision), with the floor lifted and MinMax alone: the plain form whose
    graph these tests look at (every layer integer). A bare module comes with its input shape.
    Returns the INT8 graph's path and its quantize step."""
    from gencompress.bundle import ONNX, Bundle, new_manifest
    from gencompress.export import PrecisionConfig, apply_precision, with_fp32_onnx

    bundle = model_or_bundle
    if not isinstance(bundle, Bundle):
        spec = {"name": "input", "shape": list(input_shape), "dtype": "float32", "distribution": distribution}
        bundle = Bundle(new_manifest({"kind": "module", "name": type(bundle).__name__}, spec,
                                     {"name": "image", "range": [-1.0, 1.0], "layout": "NCHW"}), bundle.eval())
    work = Path(work) / "cpu-int8"
    work.mkdir(parents=True, exist_ok=True)
    cfg = PrecisionConfig(precision="int8", target="cpu", calibrator="max", no_floor=True, calib_samples=samples, eval_samples=16,
                          deconv_form=deconv_form, cpu_runtime="onnxruntime")
    out, _ = apply_precision(with_fp32_onnx(bundle, work), cfg, work, progress=False)
    return out.file(ONNX), out.last_step("quantize")


def load_script(name: str):
    """A module of scripts/ (not a package), loaded by path: scripts/NAME.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
