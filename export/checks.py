"""Checks on an exported ONNX graph before anyone builds from it.

- ops the target cannot run, named (TensorRT's ONNX parser has no kernels for ONNX
  Runtime's integer/contrib ops or for sequences and strings);
- symbolic dimensions other than the batch axis (a generator's image size is fixed;
  TensorRT profiles and our scripts only vary the batch);
- onnxslim simplification that keeps every Q/DQ pair where it was.
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter

from gencompress import defaults
from gencompress.errors import GencompressError
from gencompress.memory import release

# Ops TensorRT's ONNX parser does not import (onnx-tensorrt's operator matrix): the
# integer forms ONNX Runtime's QOperator quantisation writes, sequences, strings, and
# a few others. Anything outside the default ONNX domain needs a plugin, so it is
# reported as well.
TENSORRT_UNSUPPORTED = frozenset({
    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear",
    "BitShift", "Det", "MaxRoiPool", "MaxUnpool", "Multinomial", "RandomNormal", "RandomNormalLike",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SplitToSequence", "ConcatFromSequence", "StringNormalizer", "TfIdfVectorizer", "Unique",
    "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "Compress",
})
DEFAULT_DOMAINS = ("", "ai.onnx")
TENSORRT_TARGETS = defaults.TENSORRT_TARGETS


def unsupported_ops(model, target: str) -> list[str]:
    """'OpType (node name)' for each node the target cannot run; empty when all is well."""
    if target not in TENSORRT_TARGETS:
        return []  # cpu: ONNX Runtime loads the graph itself and names what it lacks
    bad = []
    for node in model.graph.node:
        if node.domain not in DEFAULT_DOMAINS or node.op_type in TENSORRT_UNSUPPORTED:
            op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
            bad.append(f"{op} ({node.name or node.output[0]})")
    return bad


def check_target_ops(model, target: str, what: str = "model") -> None:
    bad = unsupported_ops(model, target)
    if bad:
        ops = sorted(Counter(b.split(" ")[0] for b in bad))
        raise GencompressError(f"{what} has ops target {target} cannot run: {', '.join(ops)} (first node: {bad[0]})")


def io_spec(model) -> dict:
    """{'inputs': [...], 'outputs': [...]} with name, dtype and shape ('batch' for symbolic dims)."""
    from onnx import TensorProto

    init = {t.name for t in model.graph.initializer}

    def describe(value) -> dict:
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return {"name": value.name, "dtype": TensorProto.DataType.Name(t.elem_type).lower(), "shape": shape}

    return {
        "inputs": [describe(v) for v in model.graph.input if v.name not in init],
        "outputs": [describe(v) for v in model.graph.output],
    }


def check_static_except_batch(model, what: str = "model") -> None:
    """Only axis 0 may be symbolic, on every input and output."""
    spec = io_spec(model)
    for kind in ("inputs", "outputs"):
        for tensor in spec[kind]:
            for axis, dim in enumerate(tensor["shape"]):
                if axis > 0 and (not isinstance(dim, int) or dim == 0):
                    raise GencompressError(
                        f"{what}: {kind[:-1]} '{tensor['name']}' has a dynamic dimension {axis} ({dim}); "
                        "only the batch axis (0) may be dynamic"
                    )


def _qdq_signature(model) -> Counter:
    """What must survive simplification: Q/DQ counts and which op types each DQ feeds."""
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    sig: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            sig[node.op_type] += 1
        if node.op_type == "DequantizeLinear":
            for op in consumers.get(node.output[0], []):
                sig[f"DQ->{op}"] += 1
    return sig


def slim(model) -> tuple[object, str]:
    """Simplify with onnxslim; keep the original when Q/DQ would not survive intact.

    Returns (model, note). onnxslim folds constants and removes Identity/Constant noise
    the TorchScript exporter leaves. If it ever folds a weight's Q/DQ into a constant or
    moves a DQ away from its Conv, TensorRT would build that layer differently from what
    we verified, so such a result is discarded (and the note says why).
    """
    import onnxslim

    before = _qdq_signature(model)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            slimmed = onnxslim.slim(model)
    except Exception as exc:  # onnxslim is a best-effort pass; the graph is valid without it
        return model, f"onnxslim failed ({type(exc).__name__}); kept the exported graph"
    finally:
        release(model.ByteSize())  # its graph's reference cycles hold a copy of every weight (gencompress/memory.py)
    if slimmed is None:
        return model, "onnxslim returned nothing; kept the exported graph"
    if _qdq_signature(slimmed) != before:
        return model, "onnxslim changed the Q/DQ structure (TensorRT needs every pair in place); kept the exported graph"
    removed = len(model.graph.node) - len(slimmed.graph.node)
    return slimmed, f"onnxslim: {removed} nodes removed, Q/DQ pairs intact"


def topological_sort(model):
    """Reorder nodes so each comes after its producers (ONNX requires it; some converters,
    e.g. onnxruntime's float16 converter, append cast nodes at the end)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = [n for n in pending if all(name in ready for name in n.input)]
        if not progressed:
            raise GencompressError(f"graph has a cycle or a missing input near node {pending[0].name or pending[0].op_type}")
        done = {id(n) for n in progressed}
        for node in progressed:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
    return model
