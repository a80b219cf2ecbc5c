"""A roofline latency estimate per layer, read off the ONNX graph. An ESTIMATE, not a measurement.

For each node: FLOPs from its shapes (onnx shape inference at the asked batch), bytes
from the tensors it reads and writes (weights included, at their stored dtype). The
layer takes max(FLOPs / peak, bytes / bandwidth) plus the profile's fixed per-layer
overhead; the model takes the sum. Q/DQ nodes: TensorRT folds them into the INT8
kernels (free on GPU/Jetson profiles); ONNX Runtime on a CPU runs them (elementwise).
A convolution whose weight comes through DequantizeLinear counts at INT8 peak. On GPU
profiles BatchNorm and activations are fused into the layer before them (as TensorRT does);
on CPU profiles a layer with fewer output channels than vector lanes runs proportionally
slower (cpu_vector_lanes: 16 float32 lanes with AVX-512, 8 with AVX2, from the profile's CPU flags).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from gencompress.errors import GencompressError

from .devices import DeviceProfile

QDQ = ("QuantizeLinear", "DequantizeLinear")
FREE = ("Shape", "Constant", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "Gather", "Concat")
ELEMENTWISE_FLOPS = {"BatchNormalization": 2, "Relu": 1, "LeakyRelu": 2, "Tanh": 4, "Sigmoid": 4, "Add": 1, "Mul": 1,
                     "Sub": 1, "Div": 1, "Clip": 1, "Resize": 1, "Upsample": 1, "InstanceNormalization": 5}
INT8_ON_CPU = ("Conv", "MatMul", "Gemm")
# TensorRT fuses these into the epilogue of the layer before them (and BatchNorm into its weights)
FUSED_ON_GPU = ("BatchNormalization", "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Clip")  # ONNX Runtime has integer kernels for these, not ConvTranspose
# A CPU computes a convolution as a GEMM whose rows are the output channels, vectorised as
# wide as its registers (16 float32 lanes with AVX-512, 8 with AVX2): a layer with fewer output
# channels than lanes leaves lanes idle (a 7x7 Conv to one grey channel runs at 1/16 of the
# measured throughput on AVX-512).
def cpu_vector_lanes(profile: DeviceProfile) -> int:
    return 16 if "avx512f" in profile.cpu_flags else 8
DTYPE_BYTES = {1: 4, 10: 2, 16: 2, 3: 1, 2: 1, 6: 4, 7: 8, 11: 8, 9: 1}


@dataclass
class LayerEstimate:
    name: str
    op: str
    precision: str
    flops: float
    bytes: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    ms: float
    bound: str


def _infer(path: str | Path, batch: int):
    """The graph with every tensor's shape known at `batch` (the batch axis fixed first)."""
    import onnx

    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name not in inits:
            dims = inp.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = batch
            elif dims and dims[0].dim_value != batch:
                raise GencompressError(f"{path} has a fixed batch of {dims[0].dim_value}; estimate at that batch")
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
    # stale value_info would pin symbolic batch dims: infer afresh, in topological order
    # (ONNX Runtime's FP16 converter appends its input Cast after the nodes that read it)
    del model.graph.value_info[:]
    _sort_topologically(model.graph)
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _sort_topologically(graph) -> None:
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the rest in file order
            ordered += pending
            break
        for node in ready:
            known.update(node.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _shapes(model) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, element type) for every tensor whose shape is fully known."""
    found = {}
    for t in model.graph.initializer:
        found[t.name] = (tuple(t.dims), t.data_type)
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        if all(d >= 0 for d in dims):
            found[vi.name] = (dims, tt.elem_type)
    return found


def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


def node_flops(node, shapes) -> float:
    """Multiply-adds x 2 for Conv/ConvTranspose/Gemm/MatMul; a few per element otherwise."""
    out = shapes.get(node.output[0], ((), 1))[0] if node.output else ()
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes[node.input[1]][0]  # Conv: Cout x Cin/g x k..; ConvTranspose: Cin x Cout/g x k..
        kernel = _numel(w[2:])
        if node.op_type == "Conv":
            return 2.0 * _numel(out) * w[1] * kernel
        x = shapes[node.input[0]][0]
        return 2.0 * _numel(x) * w[1] * kernel
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes[node.input[0]][0]
        k = a[-1]
        if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
            k = a[-2]
        return 2.0 * _numel(out) * k
    if node.op_type in FREE:
        return 0.0
    return ELEMENTWISE_FLOPS.get(node.op_type, 1) * float(_numel(out))


def node_bytes(node, shapes) -> float:
    total = 0.0
    for name in [*node.input, *node.output]:
        if name and name in shapes:
            shape, dtype = shapes[name]
            total += _numel(shape) * DTYPE_BYTES.get(dtype, 4)
    return total


def _int8_weighted(node, producers) -> bool:
    """True when the layer's weight (input 1) is produced by a DequantizeLinear node."""
    return len(node.input) > 1 and producers.get(node.input[1]) == "DequantizeLinear"


def node_precision(node, producers, shapes, profile: DeviceProfile, float_precision: str | None = None) -> str:
    """int8 for a layer with an INT8 kernel; else `float_precision` where given (the precision a GPU
    engine builder runs float layers in: FP16 under TensorRT's --fp16), else the graph's own."""
    if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and _int8_weighted(node, producers):
        if profile.kind != "cpu" or node.op_type in INT8_ON_CPU:
            return "int8"
    if float_precision is not None:
        return float_precision
    first = shapes.get(node.input[0]) if node.input else None
    return "fp16" if first and first[1] == 10 else "fp32"


def vector_efficiency(node, shapes, profile: DeviceProfile) -> float:
    """Fraction of the CPU's vector lanes a Conv/ConvTranspose/Gemm/MatMul fills (1 on GPUs)."""
    if profile.kind != "cpu" or node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return 1.0
    out = shapes[node.output[0]][0]
    rows = out[1] if node.op_type in ("Conv", "ConvTranspose") else out[-1]
    if node.op_type == "ConvTranspose":  # its GEMM (before col2im) has Cout x kernel rows
        rows *= _numel(shapes[node.input[1]][0][2:])
    return min(1.0, rows / cpu_vector_lanes(profile))


def _shapes_known(node, shapes) -> bool:
    return all(name in shapes for name in [*node.input, *node.output] if name)


def estimate_layer(node, shapes, producers, profile: DeviceProfile, float_precision: str | None = None) -> LayerEstimate | None:
    if not _shapes_known(node, shapes):
        return None  # listed in the result's unknown_shapes instead of guessed
    if node.op_type in FREE or (node.op_type in QDQ + FUSED_ON_GPU and profile.kind != "cpu"):
        return None  # folded away by the engine builder / graph optimiser
    precision = node_precision(node, producers, shapes, profile, float_precision)
    flops, nbytes = node_flops(node, shapes), node_bytes(node, shapes)
    if precision == "int8":  # the INT8 kernel reads int8 weights and activations, not the DQ'd floats
        nbytes /= 4.0
    elif precision == "fp16" and _first_dtype(node, shapes) == 1:  # an FP32 graph's tensors, held in FP16 by the engine
        nbytes /= 2.0
    compute_ms = flops / (profile.peak_tflops(precision) * 1e12) * 1e3 / vector_efficiency(node, shapes, profile)
    memory_ms = nbytes / (profile.mem_bw_gbs * 1e9) * 1e3
    overhead_ms = profile.op_overhead_us / 1e3
    return LayerEstimate(node.name or node.op_type, node.op_type, precision, flops, nbytes, compute_ms, memory_ms,
                         overhead_ms, max(compute_ms, memory_ms) + overhead_ms, "compute" if compute_ms >= memory_ms else "memory")


def _first_dtype(node, shapes) -> int | None:
    first = shapes.get(node.input[0]) if node.input else None
    return first[1] if first else None


def estimate(onnx_path: str | Path, profile: DeviceProfile, batch: int = 1, float_precision: str | None = None) -> dict:
    """Per-layer roofline and total latency (ms) of one forward pass at `batch`.

    `float_precision` ("fp16"/"fp32"): the precision layers without INT8 kernels run in, on a
    GPU/Jetson profile (an engine built with FP16 enabled runs an FP32 graph's float layers in
    FP16); None: the graph's own. CPU profiles always take the graph's own."""
    if profile.kind == "cpu":
        float_precision = None
    model = _infer(onnx_path, batch)
    shapes = _shapes(model)
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    missing = [n.name or n.op_type for n in model.graph.node if n.op_type not in FREE and not _shapes_known(n, shapes)]
    layers = [est for node in model.graph.node if (est := estimate_layer(node, shapes, producers, profile, float_precision)) is not None]
    total = sum(layer.ms for layer in layers)
    return {
        "label": "ESTIMATE (roofline), not a measurement",
        "profile": profile.key, "profile_name": profile.name, "calibrated_profile": profile.calibrated,
        "batch": batch, "float_precision": float_precision or "graph", "estimated_ms": total, "flops": sum(l.flops for l in layers), "bytes": sum(l.bytes for l in layers),
        "layers": [asdict(l) for l in layers], "unknown_shapes": missing,
    }
