"""Q/DQ lint: does an ONNX graph follow TensorRT's explicit-quantisation rules?

TensorRT reads INT8 from QuantizeLinear/DequantizeLinear pairs and accepts only what
its kernels implement: symmetric INT8 (zero-point 0, int8 dtype), per-tensor scales for
activations, per-channel weight scales along the output-channel axis (axis 0 for Conv;
for ConvTranspose the axis is a recorded choice: the quantize step's
`deconv_weight_axis`), and Q/DQ on *both* inputs of every quantised Conv, ConvTranspose
and Gemm. A violation either fails the engine build or silently runs the layer in float,
so we list each by node name before anyone gets to a device.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

QUANTISABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
INT8 = 3  # onnx.TensorProto.INT8
PASS_THROUGH = ("Transpose", "Reshape", "Identity")


@dataclass(frozen=True)
class Violation:
    node: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node}: [{self.rule}] {self.detail}"


@dataclass
class LintReport:
    violations: list[Violation] = field(default_factory=list)
    qdq_pairs: int = 0
    quantised_ops: list[str] = field(default_factory=list)
    float_ops: list[str] = field(default_factory=list)
    deconv_weight_axis: int = 1

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "violations": [asdict(v) for v in self.violations],
            "qdq_pairs": self.qdq_pairs,
            "quantised_ops": self.quantised_ops,
            "float_ops": self.float_ops,
            "deconv_weight_axis": self.deconv_weight_axis,
        }

    def summary(self) -> str:
        head = f"Q/DQ lint: {self.qdq_pairs} Q/DQ pairs, {len(self.quantised_ops)} quantised ops, {len(self.float_ops)} float ops"
        if self.passed:
            return f"{head}: PASSED"
        return "\n".join([f"{head}: FAILED ({len(self.violations)} violations)", *(f"  {v}" for v in self.violations)])


class _Graph:
    """Producers, consumers and constant values of an ONNX graph, by tensor name."""

    def __init__(self, model):
        from onnx import numpy_helper

        graph = model.graph
        self.nodes = list(graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.constants = {t.name: (numpy_helper.to_array(t), t.data_type) for t in graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant":
                for attr in n.attribute:
                    if attr.name == "value":
                        self.constants[n.output[0]] = (numpy_helper.to_array(attr.t), attr.t.data_type)

    def constant(self, name: str):
        """(array, onnx dtype) of a constant tensor, following Identity nodes; else None."""
        seen = 0
        while name not in self.constants and name in self.producer and self.producer[name].op_type == "Identity" and seen < 8:
            name, seen = self.producer[name].input[0], seen + 1
        return self.constants.get(name)

    def produced_by(self, name: str, op_type: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def dq_through(self, name: str) -> tuple[object, bool]:
        """The DequantizeLinear feeding `name`, looking through ops TensorRT moves a DQ
        across (Transpose, Reshape, Identity); and whether a 2-D transpose was crossed
        (a Linear exported as MatMul reads its weight transposed)."""
        transposed = False
        for _ in range(4):
            node = self.producer.get(name)
            if node is None:
                return None, False
            if node.op_type == "DequantizeLinear":
                return node, transposed
            if node.op_type not in PASS_THROUGH:
                return None, False
            if node.op_type == "Transpose":
                transposed = not transposed
            name = node.input[0]
        return None, False


def _attr(node, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            from onnx import helper

            return helper.get_attribute_value(attr)
    return default


def _label(node) -> str:
    return node.name or f"{node.op_type}({node.output[0]})"


def _check_qdq_node(g: _Graph, node, out: list[Violation]) -> None:
    """Symmetric INT8: zero point present, int8, all zero; scales positive and finite."""
    name = _label(node)
    zp = g.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zp is None:
        # No zero point means uint8 in ONNX, which TensorRT does not take.
        out.append(Violation(name, "zero-point", "no zero-point input (ONNX then means uint8); TensorRT needs int8 zero-point 0"))
    else:
        values, dtype = zp
        if dtype != INT8:
            out.append(Violation(name, "int8-dtype", f"zero-point dtype is {_dtype_name(dtype)}, not int8"))
        if np.any(values != 0):
            out.append(Violation(name, "symmetric", f"zero-point is not 0 (max |zp| = {int(np.max(np.abs(values)))}): asymmetric quantisation"))
    scale = g.constant(node.input[1])
    if scale is None:
        out.append(Violation(name, "constant-scale", "scale is not a constant"))
    elif not (np.all(np.isfinite(scale[0])) and np.all(scale[0] > 0)):
        out.append(Violation(name, "scale", "scale has a zero, negative or non-finite value"))


def _dtype_name(dtype: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(dtype).lower()


def _expected_weight_axis(op, deconv_axis: int, transposed: bool = False) -> int:
    if op.op_type == "ConvTranspose":
        return deconv_axis
    if op.op_type == "Gemm":
        return 0 if _attr(op, "transB", 0) else 1  # the output-feature axis of B
    if op.op_type == "MatMul":
        return 0 if transposed else 1  # B is [in, out]; a Linear's [out, in] weight reaches it transposed
    return 0


def _check_weight(g: _Graph, op, dq, deconv_axis: int, out: list[Violation], transposed: bool = False) -> None:
    scale = g.constant(dq.input[1])
    if scale is None or scale[0].size <= 1:
        return  # per-tensor weight scales are legal (if coarse)
    axis = _attr(dq, "axis", 1)
    expected = _expected_weight_axis(op, deconv_axis, transposed)
    if axis != expected:
        what = "the recorded deconv_weight_axis" if op.op_type == "ConvTranspose" else "the output-channel axis"
        out.append(Violation(_label(dq), "weight-axis", f"per-channel weight scale on axis {axis} for {op.op_type} {_label(op)}; expected {expected} ({what})"))
    q = g.produced_by(dq.input[0], "QuantizeLinear")
    if q is not None and _attr(q, "axis", 1) != axis:
        out.append(Violation(_label(q), "weight-axis", f"Q axis {_attr(q, 'axis', 1)} differs from its DQ axis {axis}"))


def _check_activation(g: _Graph, dq, out: list[Violation]) -> None:
    scale = g.constant(dq.input[1])
    if scale is not None and scale[0].size > 1:
        out.append(Violation(_label(dq), "per-tensor-activation", f"activation scale has {scale[0].size} values; TensorRT needs one per tensor"))


def _check_quantised_op(g: _Graph, op, deconv_axis: int, report: LintReport) -> None:
    found = [g.dq_through(op.input[i]) if i < len(op.input) else (None, False) for i in (0, 1)]
    inputs = [dq for dq, _ in found]
    if not any(inputs):
        report.float_ops.append(_label(op))
        return
    report.quantised_ops.append(_label(op))
    for index, dq in enumerate(inputs):
        if dq is None:
            side = "activation (input 0)" if index == 0 else "weight (input 1)"
            report.violations.append(Violation(_label(op), "qdq-inputs", f"{op.op_type} has Q/DQ on one input but not on its {side}"))
    if inputs[0] is not None:
        _check_activation(g, inputs[0], report.violations)
    if inputs[1] is not None:
        _check_weight(g, op, inputs[1], deconv_axis, report.violations, found[1][1])


def _check_pairs(g: _Graph, report: LintReport) -> None:
    """Every Q feeds only DQs with the same scale: TensorRT fuses pairs, not lone nodes."""
    for q in (n for n in g.nodes if n.op_type == "QuantizeLinear"):
        consumers = g.consumers.get(q.output[0], [])
        lone = [c for c in consumers if c.op_type != "DequantizeLinear"]
        if not consumers or lone:
            report.violations.append(Violation(_label(q), "qdq-pair", "QuantizeLinear output does not feed a DequantizeLinear"))
            continue
        report.qdq_pairs += len(consumers)
        qs = g.constant(q.input[1])
        for dq in consumers:
            ds = g.constant(dq.input[1])
            if qs is not None and ds is not None and (qs[0].shape != ds[0].shape or not np.allclose(qs[0], ds[0], rtol=1e-6)):
                report.violations.append(Violation(_label(dq), "qdq-pair", f"scale differs from its QuantizeLinear {_label(q)}"))


def _check_dq_casts(g: _Graph, report: LintReport) -> None:
    """Every DequantizeLinear feeds its layer directly: behind a Cast (an FP16 conversion that left
    the Q/DQ in FP32), TensorRT cannot fuse the pair into the INT8 kernel and the layer runs float."""
    for dq in (n for n in g.nodes if n.op_type == "DequantizeLinear"):
        if any(c.op_type == "Cast" for c in g.consumers.get(dq.output[0], [])):
            report.violations.append(Violation(_label(dq), "dq-cast", "DequantizeLinear output goes through a Cast: TensorRT "
                                               "fuses a DQ only into the layer that reads it; give Q/DQ the layer's own float type"))


def lint(model, deconv_weight_axis: int = 1) -> LintReport:
    """Lint an onnx.ModelProto; a graph with no Q/DQ at all passes (it is a float model)."""
    g = _Graph(model)
    report = LintReport(deconv_weight_axis=deconv_weight_axis)
    for node in g.nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq_node(g, node, report.violations)
    _check_pairs(g, report)
    _check_dq_casts(g, report)
    for node in g.nodes:
        if node.op_type in QUANTISABLE:
            _check_quantised_op(g, node, deconv_weight_axis, report)
    return report


def deconv_axis_from_manifest(manifest: dict, default: int = 1) -> int:
    """The ConvTranspose weight axis the quantize step recorded (the bundle's form says it)."""
    from gencompress.bundle import form_of

    return form_of(manifest).deconv_weight_axis if manifest.get("recipe") else default


def lint_file(path, manifest: dict | None = None) -> LintReport:
    from gencompress.onnx_utils import load_onnx

    axis = deconv_axis_from_manifest(manifest or {})
    return lint(load_onnx(path, check=False), axis)
