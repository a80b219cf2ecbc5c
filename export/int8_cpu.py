"""`--target cpu` INT8 under the quality floor: ONNX Runtime's integer form, searched.

The plain form (one calibrator, every Conv a QLinearConv: the removed onnx_quant.cpu_int8) broke
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
3. speed (`speed_aware`): ONNX Runtime's per-node profile of the chosen integer graph and of
   the float graph gives each layer's time in both forms; a layer whose integer form is not
   faster stays float too, if the floor still holds without it. The report lists the layers
   left float for quality and those left float for speed, with their times. Per-node times
   on a shared CPU are noisy: each is the median of `PROFILE_RUNS` runs, and the load is
   recorded with them.
Weights are 7-bit (reduce_range) in every candidate: see onnx_quant.cpu_options.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gencompress.errors import GencompressError
from gencompress.floor import QualityFloor, best_of, fewest_meeting, finite_db, not_met
from gencompress.memory import release
from gencompress.metrics import psnr
from gencompress.progress import bar

from .onnx_quant import CPU_CALIBRATORS, CPU_FORMATS, FUSED_ACTIVATIONS, MOVE_OPS, quantize_prepared
from .runners import OrtRunner, SessionFromOnnx, run_and_close

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
PROFILE_RUNS = 20
PROFILE_SECONDS, MIN_PROFILE_RUNS = 15.0, 5  # a 256-px decoder's batch takes ~2 s a run: time-bounded, as the latency table


def ranges_cache(work: Path, calibrator: str) -> Path:
    """Where a search in `work` keeps `calibrator`'s tensor ranges (computed once, read by later candidates)."""
    return work / f"ranges-{calibrator}.json"


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

    def __init__(self, prepared: Path, work: Path, calib: np.ndarray, held: np.ndarray, floor: QualityFloor, fmt: str, threads: int,
                 batch: int = 32, histogram_samples: int | None = None, reference: np.ndarray | None = None):
        self.prepared, self.work, self.calib, self.held, self.batch = prepared, work, calib, held, batch
        self.histogram_samples = histogram_samples or len(calib)
        self.floor, self.fmt, self.threads = floor, fmt, threads
        self.reference = float_reference(prepared, held, threads, batch) if reference is None else reference
        self.count = 0

    def quantize(self, calibrator: str, exclude=(), only=None) -> Path:
        self.count += 1
        dst = self.work / f"cpu-int8-{self.count}.onnx"
        return quantize_prepared(self.prepared, dst, self.calib[: self.samples(calibrator)], fmt=self.fmt, calibrator=calibrator, nodes_to_exclude=list(exclude),
                                 nodes_to_quantize=list(only) if only is not None else None,
                                 cache=ranges_cache(self.work, calibrator), batch=self.batch)

    def samples(self, calibrator: str) -> int:
        """Calibration inputs `calibrator` reads: all for MinMax, fewer for the histogram ones (defaults.HISTOGRAM_BUDGET_GMAC)."""
        return len(self.calib) if calibrator == "max" else min(len(self.calib), self.histogram_samples)

    def score(self, path: Path, psnr_only: bool = False) -> dict:
        """The floor's scores (PSNR, SSIM, meets_floor); PSNR alone where only the order counts."""
        try:
            out = run_and_close(OrtRunner(SessionFromOnnx(path, self.threads)), self.held, self.batch)
        finally:
            release(path.stat().st_size)
        return {"psnr_db": finite_db(psnr(self.reference, out))} if psnr_only else self.floor.measure(self.reference, out)


def float_reference(prepared: Path, held: np.ndarray, threads: int, batch: int = 32) -> np.ndarray:
    """The float graph's own outputs on the held-out inputs: what the search scores INT8 graphs against."""
    return run_and_close(OrtRunner(SessionFromOnnx(prepared, threads)), held, batch)


def node_times(path: Path, x: np.ndarray, threads: int, runs: int = PROFILE_RUNS, max_seconds: float = PROFILE_SECONDS) -> dict[str, float]:
    """Median microseconds per node name over `runs` runs (fewer, never under MIN_PROFILE_RUNS,
    where they would take over `max_seconds`: the warm-up run sets the pace), from ONNX Runtime's profiler."""
    import json
    import os
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling, opts.intra_op_num_threads, opts.inter_op_num_threads = True, threads, 1
    opts.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    start = time.perf_counter()
    session.run(None, feed)  # warm-up, not counted below: the profile keeps every run; drop the first
    runs = max(MIN_PROFILE_RUNS, min(runs, int(max_seconds / max(time.perf_counter() - start, 1e-6))))
    for _ in range(runs):
        session.run(None, feed)
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.unlink(trace)
    times: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"].removesuffix("_kernel_time"), []).append(e["dur"])
    return {name: float(np.median(d[-runs:])) for name, d in times.items()}


def layer_times(times: dict[str, float], prepared: Path, groups: dict[str, list[str]]) -> dict[str, float]:
    """Node times summed per layer. ONNX Runtime renames what it fuses (`/4/conv/Conv_quant_token_4`,
    a fused float conv named after its output `/4/act/Relu_output_0_nchwc`), so a profiled node
    belongs to the layer whose member node name or output tensor name is the longest prefix of
    its name; the rest (layout reorders, the graph's first QuantizeLinear) belongs to none."""
    import onnx

    owner = {}
    for node in onnx.load(str(prepared)).graph.node:
        layer = next((k for k, members in groups.items() if node.name in members), None)
        if layer is not None:
            owner.update({node.name: layer, **{out: layer for out in node.output}})
    keys = sorted(owner, key=len, reverse=True)
    total = dict.fromkeys(groups, 0.0)
    for name, us in times.items():
        key = next((k for k in keys if name.startswith(k)), None)
        if key is not None:
            total[owner[key]] += us
    return total


def slower_in_int8(float_us: dict[str, float], int8_us: dict[str, float]) -> list[str]:
    """Layers whose integer form took at least as long as their float form (a layer the
    profile could not attribute in either graph, time 0, is not judged)."""
    return [n for n in int8_us if int8_us[n] > 0 and float_us.get(n, 0) > 0 and int8_us[n] >= float_us[n]]


def _speed_pass(search: "_Search", chosen: str, groups: dict, path: Path, record: dict, threads: int, margin_db: float = 0.0) -> Path:
    """Leave float the integer layers that are not faster than float, if the floor (raised by
    the search's margin) still holds."""
    import os

    x = search.held[: max(1, min(8, len(search.held)))]
    float_us = layer_times(node_times(search.prepared, x, threads), search.prepared, groups)
    int8_us = layer_times(node_times(path, x, threads), search.prepared, groups)
    keep = record["keep_float"]
    slow = [n for n in slower_in_int8(float_us, int8_us) if n not in keep]
    record["speed"] = {"float_us": float_us, "int8_us": int8_us, "batch": len(x), "runs": f"{MIN_PROFILE_RUNS}-{PROFILE_RUNS}, about {PROFILE_SECONDS:g} s per graph", "threads": threads,
                       "loadavg": list(os.getloadavg()), "float_for_speed": [], "slower_in_int8": slow}
    if not slow or len(keep) + len(slow) >= len(groups):  # at least one layer stays INT8: else build --fp32
        record["speed"]["note"] = "no INT8 layer faster than float here: build --precision fp32 is the faster model" if slow else ""
        return path
    candidate = search.quantize(chosen, exclude=[m for n in (*keep, *slow) for m in groups[n]])
    scores = search.score(candidate)
    if not search.floor.raised_by(margin_db).holds(scores):
        return path
    record["speed"]["float_for_speed"] = slow
    record.update(psnr_db=scores["psnr_db"], ssim=scores["ssim"])
    return candidate


def search_cpu_int8(prepared: Path, work: Path, calib: np.ndarray, held: np.ndarray, floor: QualityFloor | None,
                    calibrator: str = "auto", fmt: str = "qoperator", threads: int = 2, progress: bool = True,
                    speed_aware: bool = False, batch: int = 32, histogram_samples: int | None = None,
                    margin_db: float = 0.0, reference: np.ndarray | None = None) -> tuple[Path, dict]:
    """The integer graph that meets `floor` with the fewest float nodes; returns its path and
    the record for the recipe and report (calibrators' scores, sensitivity, float nodes).
    `reference`: float_reference(prepared, held), where the caller has it already."""
    if fmt not in CPU_FORMATS:
        raise GencompressError(f"unknown CPU INT8 format {fmt!r}; known: {', '.join(CPU_FORMATS)}")
    if calibrator != "auto" and calibrator not in CPU_CALIBRATORS:
        raise GencompressError(f"calibrator {calibrator!r} is not available for --target cpu; known: auto, {', '.join(CPU_CALIBRATORS)}")
    search = _Search(prepared, work, calib, held, floor or QualityFloor(1.0), fmt, threads, batch, histogram_samples, reference)
    names = tuple(CPU_CALIBRATORS) if calibrator == "auto" else (calibrator,)
    paths, scores = {}, {}
    for name in bar(list(names), "calibrators", progress, leave=False):
        paths[name] = search.quantize(name)
        scores[name] = search.score(paths[name])
    chosen = best_of(scores)
    record = {"calibrators": {"asked": calibrator, "chosen": chosen, "scores": scores,
                              "calibration_inputs": {n: search.samples(n) for n in names}}, "floor": floor.as_dict() if floor else None,
              "keep_float": [], "float_nodes": [], "psnr_db": scores[chosen]["psnr_db"], "ssim": scores[chosen]["ssim"]}
    if floor is None:
        return paths[chosen], record
    groups = layer_groups(prepared)
    nodes = list(groups)
    sens = {n: search.score(search.quantize(chosen, only=groups[n]), psnr_only=True) for n in bar(nodes, "sensitivity", progress, leave=False)}
    record["layer_psnr_db"] = {n: s["psnr_db"] for n, s in sens.items()}
    order = sorted(nodes, key=lambda n: sens[n]["psnr_db"])  # most sensitive first
    probes: dict[int, tuple[Path, dict]] = {0: (paths[chosen], scores[chosen])}

    def probe(k: int) -> dict:
        if k not in probes:
            path = search.quantize(chosen, exclude=[m for n in order[:k] for m in groups[n]])
            probes[k] = (path, search.score(path))
        return probes[k][1]

    k = fewest_meeting(len(order) - 1, probe, floor, margin_db)  # at least one node stays integer; aims margin_db above
    record["tried"] = [{"float_layers": i, **probes[i][1]} for i in sorted(probes)]
    if k is None:
        top = max(record["tried"], key=lambda t: t["psnr_db"])
        raise not_met(floor, top, f"ONNX Runtime CPU integer form, {chosen} calibration, {top['float_layers']} of {len(order)} "
                                  "nodes float, the most sensitive first")
    path, best = probes[k]
    record.update(keep_float=order[:k], psnr_db=best["psnr_db"], ssim=best["ssim"], search_margin_db=margin_db)
    record["float_for_quality"] = list(record["keep_float"])
    if speed_aware:
        path = _speed_pass(search, chosen, groups, path, record, threads, margin_db)
        record["keep_float"] = [*record["keep_float"], *record["speed"]["float_for_speed"]]
    record["float_nodes"] = [m for n in record["keep_float"] for m in groups[n]]
    return path, record


def requantize(prepared: Path, work: Path, calibrator: str, float_nodes, dst: Path, fmt: str) -> Path:
    """The searched quantisation again, in another format (e.g. Q/DQ for OpenVINO to compile):
    same graph, same calibrator's cached ranges, same float nodes; no calibration pass."""
    cache = ranges_cache(work, calibrator)
    if not cache.is_file():
        raise GencompressError(f"no cached {calibrator} ranges in {work}: requantize follows search_cpu_int8 in the same folder")
    return quantize_prepared(prepared, dst, None, fmt=fmt, calibrator=calibrator, nodes_to_exclude=float_nodes, cache=cache)
