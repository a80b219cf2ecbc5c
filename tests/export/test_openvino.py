"""OpenVINO as a CPU runtime: runner parity with ONNX Runtime, NNCF INT8 quality, the
runtime choice of `build --int8 --target cpu` recorded in the bundle and run by `bench`."""
from __future__ import annotations

import sys
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gencompress.bundle import Bundle
from gencompress.errors import GencompressError, MissingDependencyError
from gencompress.export.cpu_runtime import Candidate, Graph, _decide
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import BACKENDS, OrtRunner, SessionFromOnnx
from gencompress.metrics import psnr
from tests.helpers import run_cli

SHAPE = (4, 8, 8)


def _decoder() -> nn.Module:
    """A latent decoder in miniature: conv + ReLU + nearest upsampling (TAESD's pattern)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 16, 3, 1, 1), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(16, 3, 3, 1, 1)).eval()


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    return export_module(_decoder(), SHAPE, tmp_path_factory.mktemp("ov") / "fp32.onnx", OnnxConfig())


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def test_missing_openvino_says_what_to_install(monkeypatch):
    from gencompress.export import openvino

    # None in sys.modules makes every import of the name raise ImportError, as when it is not installed
    for name in ("openvino", "nncf"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match="pip install openvino") as missing_openvino:
        BACKENDS["openvino"]("model.onnx")
    with pytest.raises(MissingDependencyError, match="pip install nncf") as missing_nncf:
        openvino.import_nncf()
    for missing in (missing_openvino, missing_nncf):  # the user extra, not the contributors' [dev]
        assert 'pip install -e ".[cpu]"' in str(missing.value)
    assert not openvino.available()


def _fake(name: str, runtime: str, psnr_db: float, speed: float) -> Candidate:
    return Candidate(name, Graph(runtime, Path(f"{name}.onnx")), psnr_db=psnr_db, speedup_vs_fp32_ort=speed)


def _choose(candidates, min_psnr=None):
    bar = min_psnr if min_psnr is not None else candidates[0].psnr_db - 0.1
    for c in candidates:
        c.eligible = c.psnr_db >= bar
    timing = {"median_ms": {"onnxruntime-fp32": 10.0}, "method": "test"}
    return _decide(candidates, bar, min_psnr, timing, [])


def test_choice_is_the_fastest_at_equal_or_better_quality():
    # OpenVINO faster but worse than ONNX Runtime: ONNX Runtime stays
    choice = _choose([_fake("onnxruntime", "onnxruntime", 40.0, 2.0), _fake("openvino-nncf", "openvino", 35.0, 4.0)])
    assert choice["candidate"] == "onnxruntime" and choice["vs_onnxruntime_int8"] == 1.0
    assert choice["vs_runner_up"] == pytest.approx(0.5) and choice["meets_budget"]
    # faster and as good (within 0.1 dB): OpenVINO wins, by 4/2
    choice = _choose([_fake("onnxruntime", "onnxruntime", 40.0, 2.0), _fake("openvino-nncf", "openvino", 39.95, 4.0)])
    assert choice["runtime"] == "openvino" and choice["vs_onnxruntime_int8"] == pytest.approx(2.0)
    # a budget: the fastest that meets it, however the ONNX Runtime form does
    choice = _choose([_fake("onnxruntime", "onnxruntime", 8.0, 3.0), _fake("openvino", "openvino", 36.0, 1.5),
                      _fake("openvino-nncf", "openvino", 35.5, 2.5)], min_psnr=35.0)
    assert choice["candidate"] == "openvino-nncf" and choice["quality_bar_db"] == 35.0
    # "by how much" is against the next fastest that also meets the bar, not a faster one that does not
    choice = _choose([_fake("onnxruntime", "onnxruntime", 40.0, 2.0), _fake("openvino", "openvino", 40.0, 3.0),
                      _fake("openvino-nncf", "openvino", 30.0, 5.0)])
    assert choice["candidate"] == "openvino" and choice["runner_up"] == "onnxruntime" and choice["vs_runner_up"] == pytest.approx(1.5)
    # speeds within 5% are equal: the better quality of the two wins
    choice = _choose([_fake("onnxruntime", "onnxruntime", 25.0, 1.0), _fake("openvino-nncf", "openvino", 28.3, 2.30),
                      _fake("openvino-nncf-mixed", "openvino", 26.2, 2.35)])
    assert choice["candidate"] == "openvino-nncf"
    # none meets it: the best quality, flagged
    choice = _choose([_fake("onnxruntime", "onnxruntime", 20.0, 3.0), _fake("openvino", "openvino", 30.0, 1.5)], min_psnr=35.0)
    assert choice["candidate"] == "openvino" and not choice["meets_budget"]


def test_openvino_fp32_matches_onnxruntime(fp32_onnx):
    pytest.importorskip("openvino", reason="OpenVINO is optional (pip install openvino)")
    from gencompress.export.openvino import OpenVinoModelFromFile, OpenVinoRunner

    x = _inputs(5, 0)  # an odd batch: the runner compiles per batch size
    ref = OrtRunner(SessionFromOnnx(fp32_onnx, threads=2)).infer(x)
    runner = OpenVinoRunner(OpenVinoModelFromFile(fp32_onnx, threads=2, precision="f32"))
    out = runner.infer(x)
    assert out.shape == ref.shape and np.max(np.abs(out - ref)) < 1e-4
    assert np.max(np.abs(runner.infer(x[:2]) - ref[:2])) < 1e-4
    assert runner.conditions()["INFERENCE_NUM_THREADS"] == 2 and runner.execution_precision(2) == "f32"
    with pytest.raises(GencompressError, match="unknown OpenVINO precision"):
        OpenVinoRunner(OpenVinoModelFromFile(fp32_onnx, precision="int4"))


def test_openvino_reads_a_bad_file_as_one_line_error(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is optional (pip install openvino)")
    from gencompress.export.openvino import OpenVinoModelFromFile, OpenVinoRunner

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(GencompressError, match="OpenVINO cannot read"):
        OpenVinoRunner(OpenVinoModelFromFile(bad))


def test_nncf_int8_meets_a_psnr_bound_and_saves_as_ir(fp32_onnx, tmp_path):
    pytest.importorskip("nncf", reason="NNCF is optional (pip install nncf openvino)")
    from gencompress.export import openvino

    model = openvino.nncf_int8(fp32_onnx, _inputs(64, 1))
    xml = openvino.save_ir(model, tmp_path / "ir" / openvino.IR_XML)
    assert xml.with_suffix(".bin").is_file()
    x = _inputs(32, 2)  # held out from calibration
    ref = OrtRunner(SessionFromOnnx(fp32_onnx)).infer(x)
    out = openvino.OpenVinoRunner(openvino.OpenVinoModelFromFile(xml)).infer(x)
    assert psnr(ref, out) >= 30.0  # measured 40 dB; INT8 of a random-init decoder
    assert psnr(ref, out) < 90.0  # and it really is quantised, not the FP32 graph passed through
    with pytest.raises(GencompressError, match="unknown NNCF preset"):
        openvino.nncf_int8(fp32_onnx, _inputs(8, 1), preset="fast")


def _convs_fed_by_fake_quantize(model) -> set[str]:
    return {op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Convolution" and op.input_value(0).get_node().get_type_name() == "FakeQuantize"}


def test_nncf_leaves_the_layers_it_is_given_float(fp32_onnx, capfd):
    """The searched-float NNCF candidate: ONNX node names reach NNCF's ignored scope through the
    names OpenVINO's reader gives (a biased Conv becomes NAME/WithoutBiases). Nothing reaches
    stdout, where `build --json -` writes (NNCF logs the nodes it ignores, to stdout by default)."""
    pytest.importorskip("nncf", reason="NNCF is optional (pip install nncf openvino)")
    import onnx

    from gencompress.export import openvino

    convs = [n.name for n in onnx.load(str(fp32_onnx)).graph.node if n.op_type == "Conv"]
    every = _convs_fed_by_fake_quantize(openvino.nncf_int8(fp32_onnx, _inputs(16, 1)))
    kept = _convs_fed_by_fake_quantize(openvino.nncf_int8(fp32_onnx, _inputs(16, 1), keep_float=[convs[0]]))
    assert len(every) == len(convs) >= 2
    assert not any(name.startswith(convs[0] + "/") or name == convs[0] for name in kept)
    assert len(kept) == len(convs) - 1
    assert capfd.readouterr().out == ""
    scope = openvino.ignored_scope(openvino.read_model(fp32_onnx), int8_types=openvino.SEARCHED_TYPES)
    assert "Add" in scope.types and not set(scope.types) & set(openvino.SEARCHED_TYPES)  # only convolutions stay INT8
    with pytest.raises(GencompressError, match="none of the 1 layers to keep float"):
        openvino.nncf_int8(fp32_onnx, _inputs(16, 1), keep_float=["/no/such/Conv"])


@pytest.mark.parametrize("nncf_db, convs_db, nodes, tried", [
    (20.0, 30.0, ["/a/Conv", "/a/Relu"], ["searched"]),  # the search kept layers float: they stay float in NNCF's graph
    (20.0, 37.0, [], ["convs"]),  # the search kept none: NNCF of its op types, all INT8
    (20.0, 30.0, [], ["convs"]),  # ... measured, and not chosen where it misses the bar
    (40.0, 30.0, ["/a/Conv"], []),  # NNCF's own graphs meet the bar: nothing more
])
def test_nncf_tries_the_searchs_op_types_where_its_own_graphs_miss_the_bar(fp32_onnx, tmp_path, monkeypatch, nncf_db, convs_db,
                                                                           nodes, tried):
    """Where both NNCF graphs miss the bar: NNCF of the search's op types, with the search's float
    layers float where it kept some, else all INT8."""
    pytest.importorskip("nncf", reason="NNCF is optional (pip install nncf openvino)")
    from gencompress.export import cpu_runtime, openvino

    seen = []

    def quantize(path, calibration, batch, preset, overflow_fix, keep_float=(), int8_types=None):
        seen.append((preset, list(keep_float), int8_types))
        return openvino.read_model(path)

    measured = {"onnxruntime": 38.0, "openvino": 38.0, cpu_runtime.NNCF_CONVS: convs_db, cpu_runtime.NNCF_SEARCHED: 37.0}

    def measure(c, inputs, reference, threads, batch, notes):
        c.psnr_db = measured.get(c.name, 999.0 if c.precision != "int8" else nncf_db)
        return True

    extra = (cpu_runtime.NNCF_CONVS, cpu_runtime.NNCF_SEARCHED)
    monkeypatch.setattr(openvino, "nncf_int8", quantize)
    monkeypatch.setattr(cpu_runtime, "_measure", measure)
    monkeypatch.setattr(cpu_runtime, "time_runtimes", lambda graphs, *a, **k: {
        "median_ms": dict.fromkeys(graphs, 1.0), "ratio_to_first": {n: 2.0 if n in extra else 1.0 for n in graphs}, "method": "test"})
    x = _inputs(8, 1)
    choice = cpu_runtime.choose_cpu_runtime(fp32_onnx, fp32_onnx, fp32_onnx, x, x, x, tmp_path, min_psnr=35.0,
                                            searched=cpu_runtime.SearchedFloat(fp32_onnx, nodes, 1))
    names = [c["name"] for c in choice["candidates"]]
    assert [n for n in names if n in extra] == [f"openvino-nncf-{t}" for t in tried]
    assert names[names.index("openvino-nncf-mixed") + 1 : names.index("openvino-nncf-mixed") + 1 + len(tried)] == [f"openvino-nncf-{t}" for t in tried]
    more = seen[len(cpu_runtime.NNCF_PRESETS):]  # NNCF's calls after its two presets
    assert more == [("mixed", nodes if t == "searched" else [], openvino.SEARCHED_TYPES) for t in tried]
    last = f"openvino-nncf-{tried[-1]}" if tried else None
    assert (choice["candidate"] == last) == (last is not None and measured[last] >= 35.0)  # the fastest, where it meets the bar


@pytest.mark.slow
def test_cpu_build_records_the_measured_runtime_and_bench_runs_it(tmp_path, monkeypatch):
    pytest.importorskip("nncf", reason="NNCF is optional (pip install nncf openvino)")
    from gencompress.compress import calibration
    from gencompress.export import cpu_runtime, openvino, precision

    draws = []  # the runtime choice calibrates NNCF on the search's inputs: one draw (a VAE's encoder run once), not two

    def counted(*args, **kwargs):
        draws.append(args[1:3])
        return real_draw(*args, **kwargs)

    real_draw = calibration.calibration_inputs
    monkeypatch.setattr(calibration, "calibration_inputs", counted)
    monkeypatch.setattr(precision, "calibration_inputs", counted)
    out = tmp_path / "cpu"
    result = run_cli("build", "--precision", "int8", "--target", "cpu", "--model", "upsample_conv", "--random-init", "--calib-samples", "32",
                     "--out", out, "--json", "-")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    choice = summary["cpu_runtime"]
    names = [c["name"] for c in choice["candidates"]]
    floats = ["onnxruntime-fp32", "openvino-fp32"] + (["openvino-bf16"] if openvino.fastest_float_precision() == "bf16" else [])
    assert names == ["onnxruntime", "openvino", "openvino-nncf", "openvino-nncf-mixed", *floats]  # the float model is a candidate too
    winner = next(c for c in choice["candidates"] if c["name"] == choice["candidate"])
    # the winner is not measurably slower than the fastest eligible form: by their paired rounds
    # (cpu_runtime.contenders), not by medians alone, which move 20% a round under load
    timed = [cpu_runtime.Candidate(c["name"], None, psnr_db=c["psnr_db"], speedup_vs_fp32_ort=c["speedup_vs_fp32_ort"],
                                   eligible=c["eligible"], rounds_ms=c["rounds_ms"], timed_in=c["timed_in"]) for c in choice["candidates"]]
    assert winner["eligible"] and winner["name"] in {c.name for c in cpu_runtime.contenders(timed)}
    bundle = Bundle.load(out)
    step = bundle.last_step("runtime")
    assert step["runtime"] == choice["runtime"] and step["candidate"] == choice["candidate"]
    assert step["choice"] == choice and "cpu_runtime" not in bundle.manifest["metrics"]["build"]  # the choice, kept once
    assert len(draws) == 1 and draws[0][0] == openvino.NNCF_SUBSET_SIZE, draws  # NNCF's default count; the search takes the first 32
    # the build's quality is the chosen runtime's own (the choice judged on held-out inputs, the gate on evaluation inputs)
    assert summary["quality"]["runtime"].startswith("OpenVINO" if choice["runtime"] == "openvino" else "ONNX Runtime")
    if winner["precision"] == "int8":
        # two input sets: near float (a random-init model is ~75 dB on a CPU with VNNI) dB differ more
        assert summary["quality"]["psnr_db"] == pytest.approx(winner["psnr_db"], abs=1.5, rel=0.05)
    else:  # the float model won (a tiny model's calls are per-call overhead): float rounding only, on both input sets
        assert summary["quality"]["psnr_db"] > 80.0 and winner["psnr_db"] > 80.0 and summary["precision"] == "fp32"
    assert summary["paired_speedup"]["speedup_vs_fp32_onnx"] == pytest.approx(winner["speedup_vs_fp32_ort"])
    report = (out / "report" / "report.md").read_text()
    assert "## CPU runtime" in report and (f"{choice['candidate']} won" in report or "shipping the float model" in report
                                           or f"shipping {choice['candidate']}" in report)
    if choice["runtime"] == "openvino":
        assert {"openvino/model.xml", "openvino/model.bin"} <= set(bundle.manifest["files"])
    # bench runs the runtime the build chose (which one wins is measured, so either may)
    backend = "openvino" if choice["runtime"] == "openvino" else "ort"
    bench = run_cli("bench", out, "--backend", backend, "--batch", "8", "--iters", "3", "--warmup", "1", "--eval-samples", "16")
    assert bench.exit_code == 0, bench.output
    row = json.loads(bench.stdout)["rows"][0]
    assert row["backend"] == backend and row["psnr_db"] >= 25.0


@pytest.mark.parametrize("how", ["--cpu-runtime onnxruntime", "openvino absent"])
def test_cpu_build_keeps_onnxruntime_without_measuring_when_asked_or_without_openvino(how, tmp_path, monkeypatch):
    """--cpu-runtime onnxruntime: ONNX Runtime's integer form, nothing measured. Without OpenVINO:
    that form measured against the float model on ONNX Runtime only (which wins is timed)."""
    from gencompress.export import openvino

    if how == "openvino absent":
        monkeypatch.setattr(openvino, "available", lambda: False)
    out = tmp_path / "ort"
    result = run_cli("build", "--precision", "int8", "--target", "cpu", "--model", "vae_decoder", "--random-init", "--calib-samples", "16",
                     *how.split()[:2 if how.startswith("--") else 0], "--out", out, "--json", "-")
    assert result.exit_code == 0, result.output
    choice = json.loads(result.stdout)["cpu_runtime"]
    if how == "openvino absent":
        assert [c["name"] for c in choice["candidates"]] == ["onnxruntime", "onnxruntime-fp32"] and choice["runtime"] == "onnxruntime"
        assert Bundle.load(out).last_step("runtime")["candidate"] == choice["candidate"]
    else:
        assert choice is None and Bundle.load(out).last_step("runtime") is None
    assert ("pip install openvino nncf" in result.stderr) == (how == "openvino absent")
    if how.startswith("--"):  # OpenVINO cannot read ONNX Runtime's integer form: one line that says what to run instead
        refused = run_cli("bench", out, "--backend", "openvino", "--batch", "8", "--iters", "3", "--warmup", "1")
        assert refused.exit_code == 2 and "use --backend ort" in refused.output and "Traceback" not in refused.output


def test_bad_cpu_runtime_is_refused_before_any_work(tmp_path):
    bad = run_cli("build", "--precision", "int8", "--target", "cpu", "--cpu-runtime", "tvm", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()


def test_each_timed_graph_waits_out_the_previous_runtime(tmp_path, monkeypatch):
    """Runtimes' threads spin on after their last call: before each fast graph's timed calls in a
    round, the timing child pauses COOLDOWN_S, then runs untimed calls for at least
    SETTLE_SECONDS (2 untimed calls let the same 1-ms graph time 1.6x apart in one round)."""
    import time as time_mod

    import numpy as np

    from gencompress.export import cpu_runtime

    calls, pauses = [], []

    class Counting:
        def __init__(self, name):
            self.name = name

        def infer(self, x):
            time_mod.sleep(0.002)  # a 2-ms graph
            calls.append(self.name)
            return x

    monkeypatch.setattr(cpu_runtime.Graph, "runner", lambda self, threads: Counting(self.path.name))
    real_sleep = time_mod.sleep
    monkeypatch.setattr(cpu_runtime.time, "sleep", lambda s: (pauses.append(s), real_sleep(s)))
    np.save(tmp_path / "x.npy", np.zeros((1, 1), np.float32))
    spec = {"graphs": {n: {"runtime": "onnxruntime", "path": str(tmp_path / n), "precision": None} for n in ("a", "b")},
            "threads": 2, "rounds": 2, "inner": 3, "warmup": 1, "settle": 2, "max_seconds": None, "input": str(tmp_path / "x.npy")}
    result = cpu_runtime._time_in_child(spec)
    assert pauses.count(cpu_runtime.COOLDOWN_S) == 2 * 2  # every graph, every round
    per_round = (len(calls) - 2) / (2 * 2)  # less the warm-up calls
    settle_calls = per_round - 3
    # at least SETTLE_SECONDS of untimed calls, judged by the warm-up's cost per call (2 ms plus the sleep's overhead)
    assert settle_calls >= cpu_runtime.SETTLE_SECONDS / 0.004 and settle_calls > spec["settle"]
    assert set(result["median_ms"]) == {"a", "b"}


@pytest.mark.parametrize("side, expected", [(16, 8), (256, 1)])
def test_nncf_calibrates_in_batches_whose_activations_fit(tmp_path, monkeypatch, side, expected):
    """NNCF's statistics pass keeps a whole batch's activations: at batch 4 an SD-VAE-layout
    decoder at 256 px peaked at 5.5 GB. A net with ~270 MB of activations per 256-px sample
    calibrates one input at a time; a small one keeps the timing batch."""
    pytest.importorskip("openvino")
    from gencompress.export import cpu_runtime, openvino

    net = nn.Sequential(nn.Conv2d(3, 128, 3, 1, 1), *[nn.Conv2d(128, 128, 1) for _ in range(7)], nn.Conv2d(128, 3, 1)).eval()
    onnx_path = export_module(net, (3, side, side), tmp_path / "wide.onnx", OnnxConfig())
    seen = []

    def record(_path, calibration, batch, **_kwargs):
        seen.append(batch)
        raise GencompressError("stopped here by the test")

    monkeypatch.setattr(openvino, "nncf_int8", record)
    found, notes = cpu_runtime.openvino_candidates(onnx_path, None, np.zeros((8, 3, side, side), np.float32), tmp_path, batch=8)
    assert seen == [expected] and not found and "stopped here by the test" in notes[0]
