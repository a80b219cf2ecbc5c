"""Class-conditional generators (issue 12, `--classes N`): forward(z, y) behind one packed input
[z flattened, class index], through build (gpu and cpu targets), export and bench."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gencompress.bundle import Bundle
from gencompress.conditional import pack
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.export import OnnxConfig
from gencompress.export.onnx_export import export_module
from gencompress.inputs import load_data
from gencompress.loading import call_import_spec, load_spec
from gencompress.metrics import psnr
from tests.helpers import run_cli
from tests.reliability.util import assert_one_line_error, run_main

MODEL = ["--model", "conditional_models:make", "--input-shape", "1x16"]
SMALL = ["--no-quality-floor", "--calibrator", "max", "--calib-samples", "32", "--eval-samples", "16", "--bench-seconds", "0.2"]
CLASSES = 10
CLASS_PATH_OPS = {"Gather", "Slice", "Round", "Clip", "Cast"}  # float and exact: no QuantizeLinear on the class index


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A working folder; the tests' folder on sys.path so `conditional_models:make` imports."""
    root = tmp_path_factory.mktemp("conditional")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.syspath_prepend(str(Path(__file__).parent))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def gpu_bundle(work):
    outcome = run_cli("build", "--precision", "int8", *MODEL, "--classes", str(CLASSES), *SMALL, "--out", "gpu")
    assert outcome.exit_code == 0, outcome.output
    return work / "gpu"


def _ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph's own arithmetic
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"latent": x.astype(np.float32)})[0]


def _one_input(path) -> list:
    graph = onnx.load(str(path)).graph
    assert len(graph.input) == 1 and graph.input[0].name == "latent"
    return [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]


def _every_class(n_per: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n_per latents under every class."""
    z = torch.randn(n_per, 16, generator=torch.Generator().manual_seed(seed)).repeat(CLASSES, 1)
    return z, torch.arange(CLASSES).repeat_interleave(n_per)


def _class_path_ops(path) -> set[str]:
    """The ops between the graph input and the embedding's indices: the class index must stay exact
    (a QuantizeLinear there would round class 9 to whatever the latent's INT8 scale allows)."""
    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    embed = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in weights]
    assert len(embed) == 1
    ops, todo = set(), [embed[0].input[1]]
    while todo:
        node = producer.get(todo.pop())
        if node is not None:
            ops.add(node.op_type)
            todo += [i for i in node.input if i and i not in weights]
    return ops


def _nearest_class(expected: np.ndarray, got: np.ndarray, n_per: int = 2) -> list[int]:
    """For each class's outputs in `got`, the class whose `expected` outputs are nearest (RMS)."""
    e, g = expected.reshape(CLASSES, n_per, -1), got.reshape(CLASSES, n_per, -1)
    return [int(np.argmin([((g[c] - e[k]) ** 2).mean() for k in range(CLASSES)])) for c in range(CLASSES)]


def _per_class_difference(images: np.ndarray, n_per: int = 2) -> float:
    """Smallest mean |difference| between class 0's images and another class's, same latents."""
    per = images.reshape(CLASSES, n_per, -1)
    return float(min(np.abs(per[c] - per[0]).mean() for c in range(1, CLASSES)))


# --- done when: a class-conditional generator builds, exports and benchmarks end to end ------


def test_gpu_build_packs_z_and_the_class_into_one_onnx_input(gpu_bundle):
    manifest = json.loads((gpu_bundle / "manifest.json").read_text())
    spec = manifest["input"]
    assert spec["shape"] == [17] and spec["classes"] == CLASSES and spec["z_shape"] == [16]
    assert "class index 0..9" in spec["packing"]
    assert manifest["architecture"]["conditional"] == {"classes": CLASSES, "z_shape": [16]}
    assert _one_input(gpu_bundle / "model.onnx") == ["batch", 17]
    report = (gpu_bundle / "report" / "report.md").read_text()
    assert "class uniform in 0..9" in report and "each input is packed" in report

    # The rebuilt bundle is the user's model behind the packing: wrapper(pack(z, y)) == model(z, y).
    wrapper = load_spec(str(gpu_bundle)).model
    z, y = _every_class()
    with torch.no_grad():
        direct = call_import_spec("conditional_models:make")(z, y)
        packed = wrapper(pack(z, y))
    torch.testing.assert_close(packed, direct, atol=1e-6, rtol=0)
    assert _per_class_difference(packed.numpy()) > 1e-3  # the label reaches the model

    # The INT8 Q/DQ graph follows the FP32 wrapper on every class, and keeps the classes apart.
    # (classes differ by ~35 dB here, so a class read wrongly would fall far under 45 dB)
    int8 = _ort(gpu_bundle / "model.onnx", pack(z, y).numpy())
    for c in range(CLASSES):
        sel = (y == c).numpy()
        assert psnr(packed.numpy()[sel], int8[sel], 2.0) > 45.0, f"class {c}"
    assert _nearest_class(packed.numpy(), int8) == list(range(CLASSES))
    assert {"Round", "Cast"} <= _class_path_ops(gpu_bundle / "model.onnx") <= CLASS_PATH_OPS


def test_fp32_wrapper_exports_to_onnx_that_matches_pytorch(gpu_bundle, tmp_path):
    wrapper = load_spec(str(gpu_bundle)).model
    path = export_module(wrapper, (17,), tmp_path / "fp32.onnx", OnnxConfig())
    assert _one_input(path) == ["batch", 17]
    z, y = _every_class(n_per=3)
    with torch.no_grad():
        expected = wrapper(pack(z, y)).numpy()
    np.testing.assert_allclose(_ort(path, pack(z, y).numpy()), expected, atol=1e-5, rtol=0)


def test_export_and_bench_of_the_bundle(gpu_bundle, work):
    e = run_cli("export", str(gpu_bundle), "--eval-samples", "8", "--verify-psnr", "25", "--out", "exported", "--json", "-")
    assert e.exit_code == 0, e.output
    assert _one_input(work / "exported" / "model.onnx") == ["batch", 17]
    b = run_cli("bench", str(gpu_bundle), "--backend", "ort,torch", "--batch", "1,4", "--iters", "3", "--warmup", "1",
                "--bench-seconds", "0.2", "--eval-samples", "8", "--json", "bench.json")
    assert b.exit_code == 0, b.output
    rows = json.loads((work / "bench.json").read_text())["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} >= {("ort", 1), ("ort", 4), ("torch", 1), ("torch", 4)}


def test_quantize_and_prune_rebuild_the_wrapped_model_from_the_bundle(gpu_bundle, work):
    q = run_cli("quantize", str(gpu_bundle), "--calibrator", "max", "--no-quality-floor", "--calib-samples", "16", "--out", "q")
    assert q.exit_code == 0, q.output
    fp = run_cli("build", "--precision", "fp32", *MODEL, "--classes", str(CLASSES), "--eval-samples", "8", "--bench-seconds", "0.2", "--out", "fp")
    assert fp.exit_code == 0, fp.output
    p = run_cli("prune", "fp", "--prune", "0.5", "--round-to", "1", "--distill-steps", "2", "--fid-samples", "0", "--out", "p")
    assert p.exit_code == 0, p.output
    for name in ("q", "p"):
        bundle = load_spec(str(work / name))
        assert bundle.manifest["input"]["classes"] == CLASSES
        z, y = _every_class()
        with torch.no_grad():
            images = bundle.model(pack(z, y)).numpy()
        assert images.shape == (2 * CLASSES, 1, 16, 16) and _per_class_difference(images) > 1e-3


def test_cpu_build_on_npz_latents_and_labels(work):
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((40, 16)).astype(np.float32), np.arange(40) % CLASSES
    np.savez(work / "zy.npz", z=z, y=y)
    outcome = run_cli("build", "--precision", "int8", "--target", "cpu", "--cpu-runtime", "onnxruntime", *MODEL, "--classes", str(CLASSES),
                      *SMALL, "--data", "npz:zy.npz", "--out", "cpu")
    assert outcome.exit_code == 0, outcome.output
    manifest = Bundle.load(work / "cpu").manifest
    assert manifest["data"]["count"] == 40 and "class index" in manifest["data"]["packing"]
    assert _one_input(work / "cpu" / "model.onnx") == ["batch", 17]
    wrapper = load_spec(str(work / "cpu")).model
    zs, ys = _every_class()
    with torch.no_grad():
        expected = wrapper(pack(zs, ys)).numpy()
    got = _ort(work / "cpu" / "model.onnx", pack(zs, ys).numpy())
    assert psnr(expected, got, 2.0) > 20.0  # random weights through ONNX Runtime's U8 CPU form: ~26 dB
    assert _per_class_difference(got) > 1e-3
    assert {"Round", "Cast"} <= _class_path_ops(work / "cpu" / "model.onnx") <= CLASS_PATH_OPS


# --- inputs ---------------------------------------------------------------------------


def test_draws_cover_every_class_and_keep_the_latent_draw():
    spec = {"distribution": "normal", "std": 2.0, "classes": CLASSES}
    x = draw_inputs((17,), 400, spec, 5)
    labels = x[:, -1]
    assert torch.equal(labels, labels.round()) and set(labels.long().tolist()) == set(range(CLASSES))
    plain = draw_inputs((17,), 400, {"distribution": "normal", "std": 2.0}, 5)
    torch.testing.assert_close(x[:, :-1], plain[:, :-1], atol=0, rtol=0)  # z: the same seeded draw as before
    torch.testing.assert_close(draw_inputs((17,), 400, spec, 5), x, atol=0, rtol=0)


def test_npz_z_y_and_packed_arrays_give_the_same_inputs(tmp_path):
    spec = {"name": "latent", "shape": [17], "distribution": "normal", "classes": 4, "z_shape": [16], "packing": "p"}
    z, y = np.random.default_rng(1).standard_normal((6, 16)).astype(np.float32), np.array([0, 1, 2, 3, 3, 0])
    np.savez(tmp_path / "zy.npz", z=z, y=y)
    np.savez(tmp_path / "packed.npz", x=np.concatenate([z, y[:, None]], axis=1))
    a, record = load_data(f"npz:{tmp_path / 'zy.npz'}", spec)
    b, _ = load_data(f"npz:{tmp_path / 'packed.npz'}", spec)
    assert a.shape == (6, 17) and torch.equal(a, b) and a[:, -1].tolist() == y.tolist()
    assert record["packing"] == "p"


def test_callable_batches_must_be_packed_with_valid_classes(tmp_path, monkeypatch):
    (tmp_path / "cond_loader.py").write_text(
        "import torch\n\n"
        "def good():\n    yield torch.cat([torch.zeros(3, 16), torch.tensor([[0.0], [2.0], [3.0]])], 1)\n\n"
        "def bad():\n    yield torch.cat([torch.zeros(2, 16), torch.tensor([[1.5], [0.0]])], 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "latent", "shape": [17], "distribution": "normal", "classes": 4, "z_shape": [16], "packing": "p"}
    x, _ = load_data("cond_loader:good", spec)
    assert x[:, -1].tolist() == [0.0, 2.0, 3.0]
    with pytest.raises(GencompressError, match=r"class index 1.5 is not an integer in \[0, 4\)"):
        load_data("cond_loader:bad", spec)


# --- bad input: one line, exit 2, nothing written -------------------------------------------


def _npz(work: Path, name: str, **arrays) -> str:
    np.savez(work / name, **arrays)
    return f"npz:{name}"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "forward takes (z, y): pass --classes N"),
        (["--classes", "0"], "--classes must be a positive number of classes (got 0)"),
        (["--classes", "-3"], "--classes must be a positive number of classes (got -3)"),
        (["--classes", "10", "--data", lambda w: _npz(w, "big.npz", z=np.zeros((8, 16), np.float32), y=np.array([0] * 7 + [10]))],
         "class index 10 is not an integer in [0, 10)"),
        (["--classes", "10", "--data", lambda w: _npz(w, "short.npz", z=np.zeros((8, 16), np.float32), y=np.zeros(5, int))],
         "y has 5 labels but z has 8 latents"),
        (["--classes", "10", "--data", lambda w: _npz(w, "neg.npz", x=np.concatenate([np.zeros((4, 16)), -np.ones((4, 1))], 1))],
         "class index -1 is not an integer in [0, 10)"),
        (["--classes", "10", "--data", lambda w: (w / "imgs").mkdir(exist_ok=True) or "folder:imgs"],
         "a class-conditional model (--classes) takes latents and labels"),
    ],
)
def test_bad_conditional_input_is_one_line_exit_2_and_writes_nothing(work, args, message):
    args = [a(work) if callable(a) else a for a in args]
    outcome = run_main("build", "--precision", "fp32", *MODEL, *args, "--out", "bad")
    assert_one_line_error(outcome, message)
    assert not (work / "bad").exists()


def test_classes_with_a_one_input_model_is_refused(work):
    (work / "one_input.py").write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(16, 4))\n")
    outcome = run_main("build", "--precision", "fp32", "--model", "one_input:make", "--input-shape", "1x16", "--classes", "3", "--out", "bad")
    assert_one_line_error(outcome, "--classes needs a forward that takes (z, y), but it takes one input")
    assert not (work / "bad").exists()


def test_classes_with_a_zoo_model_is_refused(work):
    assert_one_line_error(run_main("build", "--precision", "fp32", "--model", "dcgan", "--random-init", "--classes", "3", "--out", "bad"),
                          "--classes applies to a package.module:callable model")
    assert not (work / "bad").exists()


def test_histogram_calibration_skips_the_embeddings_disabled_input_quantiser(work):
    """modelopt hard-disables an nn.Embedding's input quantiser (integer indices); reading its empty
    histogram raised 'Calibrator returned None' for entropy/percentile before the fix."""
    from gencompress.compress.quantize import QuantConfig, layer_precisions, quantize_module

    bundle = load_spec("conditional_models:make", (1, 16), classes=CLASSES)
    for calibrator in ("percentile",):  # entropy reads the same histograms (and takes longer)
        qmodel = quantize_module(bundle.model, bundle.input_shape, bundle.input_distribution,
                                 QuantConfig(calibrator=calibrator, calib_samples=16), progress=False)
        assert set(layer_precisions(qmodel).values()) == {"int8"}
        z, y = _every_class()
        with torch.no_grad():
            assert psnr(bundle.model(pack(z, y)).numpy(), qmodel(pack(z, y)).numpy(), 2.0) > 30.0
