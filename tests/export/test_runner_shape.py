"""Every runner has one constructor shape (Polygraphy's): XRunner(load, name=None, **how_to_run),
where `load` is a loader (called once) or the object it builds."""
from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch

from gencompress.benchmarks import runners_extra
from gencompress.errors import GencompressError, MissingDependencyError
from gencompress.export import openvino
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import BACKENDS, Loader, ModuleOnDevice, OrtRunner, SessionFromOnnx, TorchRunner
from gencompress.export.tensorrt.runner import EngineFromBundle, EngineFromBytes, TrtRunner

RUNNERS = (TorchRunner, OrtRunner, openvino.OpenVinoRunner, TrtRunner, runners_extra.TorchBestRunner,
           runners_extra.TorchCompileRunner, runners_extra.CudaGraphRunner)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 4, 1, 0), torch.nn.Tanh()).eval()
    path = export_module(model, (8, 1, 1), tmp_path_factory.mktemp("shape") / "m.onnx", OnnxConfig())
    x = np.random.default_rng(0).standard_normal((3, 8, 1, 1)).astype(np.float32)
    return model, path, x


@pytest.mark.parametrize("cls", RUNNERS, ids=lambda c: c.__name__)
def test_every_runner_has_the_same_constructor_shape(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # after self
    assert [p.name for p in params[:2]] == ["load", "name"]
    load, name = params[:2]
    assert load.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and load.default is inspect.Parameter.empty
    assert name.default is None
    # the rest are how to run, by keyword only; how to build lives in the loader
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), [p.name for p in params[2:]]
    assert not {"threads", "device", "optimization", "precision", "path"} & {p.name for p in params}


def test_registered_factories_build_those_runners(tiny):
    model, path, _ = tiny
    threads = torch.get_num_threads()
    try:
        made = {"torch": BACKENDS["torch"](copy.deepcopy(model), threads=1), "ort": BACKENDS["ort"](path, threads=1),
                "torch-compile": BACKENDS["torch-compile"](copy.deepcopy(model))}  # torch.compile compiles on the first call only
        assert made["ort"].conditions()["intra_op_threads"] == 1 and made["torch"].conditions()["threads"] == 1
    finally:
        torch.set_num_threads(threads)  # ModuleOnDevice set it for the whole process
    for name, runner in made.items():
        assert type(runner) in RUNNERS and isinstance(runner.loader, Loader), name
        runner.close()


def _has_openvino() -> bool:
    try:
        openvino.import_openvino()
    except MissingDependencyError:
        return False
    return True


def _pairs(model, path):
    """(runner from a loader, runner from what that loader builds) per CPU backend."""
    prepared = runners_extra.PreparedModule(copy.deepcopy(model), channels_last=True)
    pairs = {
        "torch": (TorchRunner(ModuleOnDevice(copy.deepcopy(model))), TorchRunner(copy.deepcopy(model))),
        "ort": (OrtRunner(SessionFromOnnx(path, threads=1)), OrtRunner(SessionFromOnnx(path, threads=1)())),
        "torch-best": (runners_extra.TorchBestRunner(prepared),
                       runners_extra.TorchBestRunner(runners_extra.PreparedModule(copy.deepcopy(model), channels_last=True)())),
    }
    if _has_openvino():
        pairs["openvino"] = (openvino.OpenVinoRunner(openvino.OpenVinoModelFromFile(path, threads=1)),
                             openvino.OpenVinoRunner(openvino.OpenVinoModelFromFile(path, threads=1)()))
    return pairs


def test_a_loader_and_what_it_builds_run_the_same(tiny):
    model, path, x = tiny
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    pairs = _pairs(model, path)
    for backend, (from_loader, from_object) in pairs.items():
        assert from_loader.loader is not None and from_object.loader is None, backend
        a, b = from_loader.infer(x), from_object.infer(x)
        assert a.shape == expected.shape and np.max(np.abs(a - b)) <= 1e-6, backend
        assert np.max(np.abs(a - expected)) < 1e-4, backend  # and both are the model
        if hasattr(from_loader, "conditions"):
            assert from_loader.conditions() == from_object.conditions(), backend  # read back from the built object
    best_loader, best_object = pairs["torch-best"]
    assert best_loader.channels_last and best_object.channels_last  # the built module's weight format is read back


class _Counting(Loader):
    def __init__(self, inner: Loader):
        self.inner, self.calls = inner, 0

    def __call__(self):
        self.calls += 1
        return self.inner()


def test_the_runner_calls_its_loader_exactly_once(tiny):
    model, path, x = tiny
    loaders = {TorchRunner: _Counting(ModuleOnDevice(copy.deepcopy(model))), OrtRunner: _Counting(SessionFromOnnx(path, threads=1)),
               runners_extra.TorchBestRunner: _Counting(runners_extra.PreparedModule(copy.deepcopy(model)))}
    for cls, loader in loaders.items():
        runner = cls(loader, name="mine")
        assert loader.calls == 1 and runner.name == "mine" and cls.name != "mine"
        runner.infer(x)
        runner.infer(x[:1])
        assert loader.calls == 1, cls.__name__


def test_a_bad_onnx_file_is_still_a_one_line_error(tiny, tmp_path):
    _, path, _ = tiny
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(path.read_bytes()[:40])
    loader = SessionFromOnnx(bad)  # a loader is lazy: nothing is read until it is called
    for make in (lambda: OrtRunner(loader), lambda: BACKENDS["ort"](tmp_path / "missing.onnx")):
        with pytest.raises(GencompressError, match="ONNX Runtime cannot load") as info:
            make()
        assert "\n" not in str(info.value) and len(str(info.value)) < 400
    with pytest.raises(TypeError, match="SessionFromOnnx"):  # the old constructor's path, with the fix in the message
        OrtRunner(path)
    with pytest.raises(GencompressError, match="optimisation level"):  # a bad option fails before any work
        SessionFromOnnx(tmp_path / "missing.onnx", optimization="max")


def test_tensorrt_loaders_are_lazy_and_say_what_to_install(tmp_path):
    from gencompress.export.tensorrt import available

    loaders = (EngineFromBytes(b"\0" * 16), EngineFromBundle(None))  # made without TensorRT, GPU or file
    if available():
        pytest.skip("TensorRT is installed: tests/export/test_tensorrt.py runs the real loaders")
    for loader in loaders:
        with pytest.raises(MissingDependencyError, match="TensorRT"):
            loader()


def test_cuda_graph_runner_says_it_needs_a_gpu(tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model = tiny[0]
    for load in (runners_extra.PreparedModule(copy.deepcopy(model), device="cuda"), copy.deepcopy(model)):
        with pytest.raises(GencompressError, match="cuda-graph backend needs a CUDA GPU"):
            runners_extra.CudaGraphRunner(load)
