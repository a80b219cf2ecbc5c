"""`--target cpu` INT8 under the quality floor: ONNX Runtime's integer form, searched.

The plain form (onnx_quant.quantize_cpu, one calibrator, every Conv a QLinearConv) broke
generators: 7.7 dB on a TAESD-like decoder. In order of cost, this module
1. quantises with each ONNX Runtime calibrator (MinMax, Entropy, Percentile) and keeps the
   one whose graph is closest to the FP32 graph on held-out inputs (another draw than the
   calibration inputs); each calibrator's ranges are computed once and cached
   (quantize_static's calibration_cache_path), so later candidates only re-quantise;
2. if the floor still fails, measures each convolution's sensitivity (the graph with only
   that node integer, `nodes_to_quantize=[node]`: a layer whose input range is wide shows
   it there, where leaving it alone out would not, because its neighbour still hands it
   coarse uint8) and leaves the most sensitive ones float (`nodes_to_exclude`, a layer being
   its Conv with its fused ReLU and the data movement after it) until the floor holds, at least one node staying integer; else a one-line error with the best.
Weights are 7-bit (reduce_range) in every candidate: see onnx_quant.quantize_cpu.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gencompress.errors import GencompressError
from gencompress.floor import QualityFloor, best_of, finite_db, not_met
from gencompress.metrics import psnr
from gencompress.progress import bar

from .onnx_quant import CPU_CALIBRATORS, CPU_FORMATS, FUSED_ACTIVATIONS, MOVE_OPS, quantize_prepared
from .runners import OrtRunner

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def layer_groups(prepared: Path) -> dict[str, list[str]]:
    """Each node that becomes integer (Conv/Gemm/MatMul), in graph order, with the nodes that
    make up its layer in the integer graph: the ReLU folded into it and the data movement
    (DepthToSpace, Reshape, Transpose) after it. Leaving a layer float means leaving all of
    them float: a float Conv whose DepthToSpace stays integer still squeezes its output
    through uint8, and the layer loses nothing it did not lose before."""
    import onnx

    nodes = onnx.load(str(prepared)).graph.node
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    groups = {}
    for node in nodes:
        if node.op_type not in QUANTIZED_OPS:
            continue
        group, tail = [node.name], node
        while len(tail.output) == 1 and len(consumers.get(tail.output[0], [])) == 1:
            tail = consumers[tail.output[0]][0]
            if tail.op_type not in (*MOVE_OPS, *FUSED_ACTIVATIONS):
                break
            group.append(tail.name)
        groups[node.name] = group
    return groups


class _Search:
    """Quantise the prepared float graph with given choices and score it on held-out inputs."""

    def __init__(self, prepared: Path, work: Path, calib: np.ndarray, held: np.ndarray, floor: QualityFloor, fmt: str, threads: int):
        self.prepared, self.work, self.calib, self.held = prepared, work, calib, held
        self.floor, self.fmt, self.threads = floor, fmt, threads
        runner = OrtRunner(prepared, threads)
        self.reference = runner.infer(held)  # the float graph itself: the search's FP32
        runner.close()
        self.count = 0

    def quantize(self, calibrator: str, exclude=(), only=None) -> Path:
        self.count += 1
        dst = self.work / f"cpu-int8-{self.count}.onnx"
        return quantize_prepared(self.prepared, dst, self.calib, fmt=self.fmt, calibrator=calibrator, nodes_to_exclude=list(exclude),
                                 nodes_to_quantize=list(only) if only is not None else None,
                                 cache=self.work / f"ranges-{calibrator}.json")

    def score(self, path: Path, psnr_only: bool = False) -> dict:
        """The floor's scores (PSNR, SSIM, meets_floor); PSNR alone where only the order counts."""
        runner = OrtRunner(path, self.threads)
        try:
            out = runner.infer(self.held)
        finally:
            runner.close()
        return {"psnr_db": finite_db(psnr(self.reference, out))} if psnr_only else self.floor.measure(self.reference, out)


def search_cpu_int8(prepared: Path, work: Path, calib: np.ndarray, held: np.ndarray, floor: QualityFloor | None,
                    calibrator: str = "auto", fmt: str = "qoperator", threads: int = 2, progress: bool = True) -> tuple[Path, dict]:
    """The integer graph that meets `floor` with the fewest float nodes; returns its path and
    the record for the recipe and report (calibrators' scores, sensitivity, float nodes)."""
    if fmt not in CPU_FORMATS:
        raise GencompressError(f"unknown CPU INT8 format {fmt!r}; known: {', '.join(CPU_FORMATS)}")
    if calibrator != "auto" and calibrator not in CPU_CALIBRATORS:
        raise GencompressError(f"calibrator {calibrator!r} is not available for --target cpu; known: auto, {', '.join(CPU_CALIBRATORS)}")
    search = _Search(prepared, work, calib, held, floor or QualityFloor(1.0), fmt, threads)
    names = tuple(CPU_CALIBRATORS) if calibrator == "auto" else (calibrator,)
    paths, scores = {}, {}
    for name in bar(list(names), "calibrators", progress, leave=False):
        paths[name] = search.quantize(name)
        scores[name] = search.score(paths[name])
    chosen = best_of(scores)
    record = {"calibrators": {"asked": calibrator, "chosen": chosen, "scores": scores}, "floor": floor.as_dict() if floor else None,
              "keep_float": [], "psnr_db": scores[chosen]["psnr_db"], "ssim": scores[chosen]["ssim"]}
    if floor is None:
        return paths[chosen], record
    groups = layer_groups(prepared)
    nodes = list(groups)
    sens = {n: search.score(search.quantize(chosen, only=groups[n]), psnr_only=True) for n in bar(nodes, "sensitivity", progress, leave=False)}
    record["layer_psnr_db"] = {n: s["psnr_db"] for n, s in sens.items()}
    order = sorted(nodes, key=lambda n: sens[n]["psnr_db"])  # most sensitive first
    tried = [{"float_layers": 0, **scores[chosen]}]
    path, best = paths[chosen], scores[chosen]
    for k in range(1, len(order)):
        if best["meets_floor"]:
            break
        path = search.quantize(chosen, exclude=[m for n in order[:k] for m in groups[n]])
        best = search.score(path)
        tried.append({"float_layers": k, **best})
    record["tried"] = tried
    if not best["meets_floor"]:
        top = max(tried, key=lambda t: t["psnr_db"])
        raise not_met(floor, top, f"ONNX Runtime CPU integer form, {chosen} calibration, {top['float_layers']} of {len(order)} "
                                  "nodes float, the most sensitive first")
    record.update(keep_float=order[: tried[-1]["float_layers"]], psnr_db=best["psnr_db"], ssim=best["ssim"])
    return path, record
