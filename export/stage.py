"""The export stage: a bundle -> a bundle with a checked, verified model.onnx (or engine.plan).

    gencompress export BUNDLE --format onnx --precision int8 --out DIR

1. rebuild the bundle's PyTorch model (the INT8 fake-quant model for --precision int8);
2. export ONNX (TorchScript exporter: it writes modelopt's quantisers as Q/DQ pairs);
3. simplify with onnxslim, unless that would disturb a Q/DQ pair;
4. check: onnx.checker (full), ops the target can run, only the batch axis dynamic;
5. Q/DQ lint (TensorRT's explicit-quantisation rules): a graph that fails it is refused (exit 2);
6. verify: ONNX Runtime vs PyTorch on fixed latents; under --verify-psnr is exit 1;
7. for a Jetson target, add build_engine.sh / run_bench.sh / README.md;
8. save atomically to --out (the old folder stays whole on any failure).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from torch import nn

from gencompress import defaults
from gencompress.atomic import check_output_dir
from gencompress.bundle import ENGINE, ONNX, SOURCE_ONNX, WEIGHTS, Bundle, Form, form_of
from gencompress.errors import GencompressError, VerificationError
from gencompress.inputs import peak, prepare_inputs
from gencompress.loading import load_spec, model_from_bundle
from gencompress.onnx_utils import float_compute, load_onnx, opset_of

from . import checks, jetson, qdq_lint, verify
from .onnx_export import MIN_OPSET, OnnxConfig, export_module
from .profiles import BatchProfile

FORMATS = ("onnx", "engine")
PRECISIONS = defaults.PRECISIONS
EXPORT_TARGETS = defaults.TARGETS


@dataclass
class ExportConfig:
    source: str = ""  # bundle folder (or an .onnx file)
    out: str = "gencompress-export"
    format: str = "onnx"
    precision: str | None = None  # None: int8 for a quantised bundle, else fp32
    opset: int = 17
    batch: BatchProfile = field(default_factory=BatchProfile)
    target: str = "gpu"
    min_psnr: float = 40.0
    verify_samples: int = 16
    seed: int = 0
    slim: bool = True
    threads: int = 2
    workspace_mib: int = 1024  # TensorRT builder scratch memory (--format engine)
    data: str | None = None  # --data SPEC: verify on the user's inputs (gencompress/inputs.py)
    io_spec: dict = field(default_factory=dict)  # --input-kind/--input-range/--input-std/--output-range

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise GencompressError(f"unknown --format {self.format!r}; known: {', '.join(FORMATS)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise GencompressError(f"unknown --precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.opset < MIN_OPSET:
            raise GencompressError(f"--opset must be at least {MIN_OPSET}")
        if self.target not in EXPORT_TARGETS:
            raise GencompressError(f"unknown --target {self.target!r}; known: {', '.join(EXPORT_TARGETS)}")
        if self.verify_samples < 1:
            raise GencompressError("--eval-samples must be at least 1")
        self.batch.validate()


def log(msg: str) -> None:
    print(msg, file=sys.stderr)


def model_for(bundle: Bundle, precision: str) -> nn.Module:
    """The PyTorch model an ONNX of `precision` is exported from (and verified against)."""
    if precision == "int8":
        if not bundle.form.is_int8:
            raise GencompressError("bundle is not INT8-quantised: run `gencompress quantize` first, or export --precision fp32/fp16")
        from gencompress.compress import load_model

        # Without the in-memory (FP32) model, the loader rebuilds the fake-quant one from disk.
        return load_model(Bundle(bundle.manifest, None, dict(bundle.files), bundle.path)).eval()
    return model_from_bundle(bundle)


def export(cfg: ExportConfig) -> Bundle:
    """Stage function behind `gencompress export`: load, export, check, verify, save."""
    cfg.validate()
    check_output_dir(cfg.out)  # fail before the work, not after it
    bundle = load_spec(cfg.source)
    data = prepare_inputs(bundle.manifest, cfg.data, cfg.io_spec, cfg.verify_samples)
    verify_inputs = data.evaluation.numpy() if data is not None else None
    work = Path(tempfile.mkdtemp(prefix="gencompress-export-"))
    try:
        if cfg.format == "engine":
            out = build_engine(bundle, cfg, work)
        elif _int8_lives_in_graph(bundle, cfg):
            out = reexport_graph_int8(bundle, cfg, work)
        elif bundle.manifest["architecture"]["kind"] in ("zoo", "import"):
            out = export_onnx(bundle, cfg, work, verify_inputs)
        else:
            out = recheck_onnx(bundle, cfg, work)
        add_target_files(out, cfg, work)
        return out.save(cfg.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _int8_lives_in_graph(bundle: Bundle, cfg: ExportConfig) -> bool:
    """INT8 made on the ONNX graph (ONNX Runtime's quantiser): the weights are FP32, so
    re-exporting them would write an FP32 graph; the bundle's model.onnx is the INT8."""
    form = bundle.form
    return form.is_int8 and not form.fake_quant_weights and (cfg.precision or "int8") == "int8"


def reexport_graph_int8(bundle: Bundle, cfg: ExportConfig, work: Path) -> Bundle:
    """Check and lint the bundle's INT8 graph again for --target; verify it against the FP32
    PyTorch model where the bundle has one (the INT8 has no fake-quant twin)."""
    form = bundle.form
    if form.quantisation == "ort-qlinear" and cfg.target != "cpu":
        raise GencompressError(f"this bundle holds ONNX Runtime's CPU integer form (QLinearConv), which {cfg.target} "
                               "cannot run: export it with --target cpu, or quantise for TensorRT (build --int8 --target gpu)")
    src = bundle.file(ONNX)
    final, report = check_and_lint(Path(src), bundle.manifest, cfg, work / ONNX, "int8", form)
    step = {"step": "export", "format": "onnx", "precision": "int8", "target": cfg.target, "dynamic_batch": cfg.batch.as_dict(), **report}
    out = bundle.derive(step)
    if bundle.manifest["architecture"]["kind"] in ("zoo", "import") and bundle.path is not None:
        model = model_from_bundle(bundle)  # the FP32 weights the graph was quantised from
        result, _ = verify.compare(model, final, bundle.input_shape, bundle.manifest["input"], _verify_cfg(cfg),
                                    data_range=peak(bundle.manifest))
        result["reference"] = "FP32 PyTorch (the INT8 was made on the ONNX graph)"
        log(verify.format_result(result, bundle.manifest["output"].get("name", "image")))
        verify.require(result)
        out.manifest["metrics"]["export_verification"] = result
    else:
        out.manifest["metrics"]["export_verification"] = {"skipped": "no PyTorch model in the bundle"}
    return _with_onnx(out, bundle, final)


def export_onnx(bundle: Bundle, cfg: ExportConfig, work: Path, verify_inputs=None) -> Bundle:
    """`verify_inputs`: the user's evaluation data (np.ndarray) to verify on; None: fixed drawn latents."""
    precision = cfg.precision or bundle.form.precision
    model = model_for(bundle, precision)
    # The batch axis stays symbolic even for a fixed --dynamic-batch N: the profile pins it
    # for TensorRT, and ONNX Runtime runs any batch.
    names = OnnxConfig(opset=cfg.opset, dynamic_batch=True, slim=False,
                       input_name=bundle.manifest["input"].get("name", "latent"),
                       output_name=bundle.manifest["output"].get("name", "image"))
    path = export_module(model, bundle.input_shape, work / "exported.onnx", names)
    if precision == "fp16" or (precision == "int8" and cfg.target != "cpu" and has_fp16_float_layers(bundle)):
        from .onnx_quant import convert_fp16

        path = convert_fp16(path, work / "fp16.onnx")
    final, report = check_and_lint(path, bundle.manifest, cfg, work / ONNX, precision, bundle.form)
    result, inputs = verify.compare(model, final, bundle.input_shape, bundle.manifest["input"], _verify_cfg(cfg),
                                    verify_inputs, peak(bundle.manifest))
    log(verify.format_result(result, names.output_name))
    if not result["passed"]:
        log(verify.format_layer_errors(verify.layer_errors(model, final, inputs[: cfg.batch.max])))
        verify.require(result)
    out = bundle.derive({"step": "export", "format": "onnx", "precision": precision, "opset": opset_of(final),  # 19 once FP16 Q/DQ
                         "dynamic_batch": cfg.batch.as_dict(), "target": cfg.target, **report})
    out.manifest["metrics"]["export_verification"] = result
    return _with_onnx(out, bundle, final)


def has_fp16_float_layers(bundle: Bundle) -> bool:
    """The build put the INT8 graph's float layers in FP16 (export.precision.fp16_float_layers),
    and that graph is still the bundle's quantisation (no `quantize` after it): a re-export of its
    fake-quant model does the same."""
    steps = [s for s in bundle.recipe if s.get("step") == "quantize" or s.get("float_layers")]
    return bool(steps) and steps[-1].get("float_layers") == "fp16"


def check_and_lint(path: Path, manifest: dict, cfg: ExportConfig, dst: Path, precision: str, form: Form | None = None) -> tuple[Path, dict]:
    """Slim, full-check, target ops, batch-only dynamic dims, INT8 really there, Q/DQ lint; write `dst`."""
    form = form or form_of(manifest)
    model = checks.topological_sort(load_onnx(path, check=False))
    note = "not simplified (--no-slim)"
    if cfg.slim:
        model, note = checks.slim(model)
    onnx.save(model, str(dst))
    model = load_onnx(dst, check=True)
    checks.check_target_ops(model, cfg.target, dst.name)
    checks.check_static_except_batch(model, dst.name)
    if precision == "int8":
        require_int8_nodes(model, dst.name)
    if form.quantisation == "ort-qlinear":
        # ONNX Runtime's U8 QLinearConv form is not TensorRT's explicit Q/DQ: the lint's rules do not apply.
        return dst, {"slim": note, "io": checks.io_spec(model), "qdq_lint": {"skipped": CPU_FORM_SKIP}, "onnx_checker": "full: passed"}
    lint = qdq_lint.lint(model, form.deconv_weight_axis)
    log(lint.summary())
    refuse_lint_failure(lint, dst.name)
    return dst, {"slim": note, "io": checks.io_spec(model), "qdq_lint": lint.as_dict(), "onnx_checker": "full: passed"}


def refuse_lint_failure(lint: qdq_lint.LintReport, what: str) -> None:
    """A graph that breaks TensorRT's explicit-quantisation rules is never written: TensorRT would
    drop or misplace its Q/DQ pairs. One line naming the violating nodes, exit 2."""
    if lint.passed:
        return
    nodes = list(dict.fromkeys(v.node for v in lint.violations))
    shown = ", ".join(nodes[:8]) + (f" and {len(nodes) - 8} more" if len(nodes) > 8 else "")
    raise GencompressError(f"{what} fails the Q/DQ lint (TensorRT's explicit-quantisation rules) with {len(lint.violations)} "
                           f"violation(s) at node(s) {shown}; first: {lint.violations[0]}; nothing was written")


CPU_FORM_SKIP = "skipped: ONNX Runtime CPU integer form, not TensorRT's explicit Q/DQ"
# Nodes that carry INT8: the Q/DQ pairs, or ONNX Runtime's integer operators.
INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})


def require_int8_nodes(model, what: str) -> None:
    """An INT8 export whose graph holds no quantisation is an FP32 graph under the wrong name."""
    if not any(node.op_type in INT8_OPS for node in model.graph.node):
        raise VerificationError(f"{what} is recorded as INT8 but holds no Q/DQ or integer nodes: the export lost the "
                                "quantisation (refusing to record an FP32 graph as int8)")


def recheck_onnx(bundle: Bundle, cfg: ExportConfig, work: Path) -> Bundle:
    """A bundle or file that is ONNX only: check and lint it again (no PyTorch to verify against)."""
    src = bundle.files.get(ONNX) or bundle.file(SOURCE_ONNX)
    final, report = check_and_lint(Path(src), bundle.manifest, cfg, work / ONNX, cfg.precision or "unknown")
    step = {"step": "export", "format": "onnx", "target": cfg.target, "verification": "skipped: no PyTorch model in the bundle", **report}
    out = bundle.derive(step)
    out.files.pop(SOURCE_ONNX, None)
    out.files[ONNX] = final
    return out


def _with_onnx(out: Bundle, source: Bundle, onnx_path: Path) -> Bundle:
    """Carry the source's weights byte for byte (not re-serialised) and add model.onnx."""
    out.model = None
    # An engine, report or device scripts made from the old ONNX no longer describe this one.
    for name in [n for n in out.files if n == ENGINE or n.startswith("report/") or n in jetson.TEMPLATES]:
        out.files.pop(name)
    if source.path is not None and WEIGHTS in source.manifest["files"]:
        out.files[WEIGHTS] = source.path / WEIGHTS
    out.files[ONNX] = onnx_path
    spec = checks.io_spec(load_onnx(onnx_path, check=False))
    out.manifest["input"]["name"] = spec["inputs"][0]["name"]
    out.manifest["output"]["name"] = spec["outputs"][0]["name"]
    return out


def _verify_cfg(cfg: ExportConfig) -> verify.VerifyConfig:
    return verify.VerifyConfig(min_psnr=cfg.min_psnr, samples=cfg.verify_samples, seed=cfg.seed,
                               batch=max(1, min(cfg.batch.max, 8)), threads=cfg.threads)


def add_target_files(out: Bundle, cfg: ExportConfig, work: Path) -> None:
    if cfg.target not in jetson.JETSON_TARGETS:
        return
    files = jetson.write_jetson_files(work, cfg.target, out.form.precision, out.manifest["input"].get("name", "latent"),
                                      out.input_shape, cfg.batch, float_compute(out.file(ONNX)) if ONNX in out.files else "fp32")
    out.files.update(files)
    out.manifest["metrics"]["deployment"] = jetson.target_record(cfg.target)


def build_engine(bundle: Bundle, cfg: ExportConfig, work: Path) -> Bundle:
    """`--format engine`: TensorRT engine from the bundle's model.onnx (TensorRT must import)."""
    from .tensorrt import import_tensorrt

    import_tensorrt()  # raises with what to install
    from .tensorrt.builder import BuildConfig, build_engine_file

    onnx_path = bundle.files.get(ONNX) or bundle.file(SOURCE_ONNX)
    load_onnx(onnx_path, check=True)
    info = build_engine_file(onnx_path, work / ENGINE, BuildConfig(precision=cfg.precision, batch=cfg.batch, workspace_mib=cfg.workspace_mib))
    out = bundle.derive({"step": "engine", "tool": "tensorrt", **{k: v for k, v in info.items() if k != "path"}})
    out.files[ENGINE] = work / ENGINE
    if bundle.path is not None and WEIGHTS in bundle.manifest["files"]:
        out.model, out.files[WEIGHTS] = None, bundle.path / WEIGHTS
    out.manifest["metrics"]["engine"] = info
    return out



def check_export(bundle: Bundle, target: str, work: Path, batch: BatchProfile | None = None, min_psnr: float = 40.0,
                 inputs=None, verify_twin: bool = True) -> dict:
    """What `gencompress build` runs on the ONNX it writes: the same checks as `export`.

    Records instead of raising for the PSNR (build reports quality; the numbers go in the
    summary and manifest), but a graph that fails the Q/DQ lint, one the target cannot run,
    or one with a dynamic non-batch dimension is an error (exit 2, nothing written), as in `export`.
    `inputs`: the user's evaluation data to verify on (default: fixed drawn latents).
    `verify_twin=False`: no comparison with the bundle's PyTorch model (a graph converted after
    the export was verified, e.g. its float layers to FP16, which the build's gate judges).
    """
    path = bundle.file(ONNX)
    # onnxruntime's float16 converter leaves nodes out of order: sort before the full check
    onnx.save(checks.topological_sort(load_onnx(path, check=False)), str(path))
    model = load_onnx(path, check=True)
    checks.check_target_ops(model, target, path.name)
    checks.check_static_except_batch(model, path.name)
    result: dict = {"onnx_checker": "full: passed", "io": checks.io_spec(model)}
    form = bundle.form
    if form.is_int8:
        require_int8_nodes(model, path.name)
    if form.quantisation == "ort-qlinear":
        # ONNX Runtime's QOperator u8s8 graph is not TensorRT's Q/DQ form, and there is no
        # fake-quant PyTorch twin to verify against (build's quality section compares to FP32).
        result.update({"qdq_lint": {"skipped": CPU_FORM_SKIP}, "verification": {"skipped": CPU_FORM_SKIP}})
        return result
    lint = qdq_lint.lint(model, form.deconv_weight_axis)
    result["qdq_lint"] = lint.as_dict()
    refuse_lint_failure(lint, path.name)
    if bundle.model is not None and verify_twin:
        vcfg = verify.VerifyConfig(min_psnr=min_psnr)
        verification, inputs = verify.compare(bundle.model, path, bundle.input_shape, bundle.manifest["input"], vcfg,
                                              inputs, peak(bundle.manifest))
        if not verification["passed"]:
            log(verify.format_result(verification))
            verification["layers"] = verify.layer_errors(bundle.model, path, inputs[:8])
            log(verify.format_layer_errors(verification["layers"]))
        result["verification"] = verification
    elif verify_twin:
        result["verification"] = {"skipped": "no PyTorch model (the graph was quantised as ONNX)"}
    if target in jetson.JETSON_TARGETS:
        files = jetson.write_jetson_files(work, target, form.precision, bundle.manifest["input"].get("name", "latent"),
                                          bundle.input_shape, batch, float_compute(model))
        bundle.files.update(files)
        result["deployment"] = jetson.target_record(target)
    return result
