"""Every runner reports its own inference time, the same way (Polygraphy's runner shape)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gencompress.benchmarks import runners_extra
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import BACKENDS, OrtRunner, Runner, SessionFromOnnx, TorchRunner


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 4, 1, 0), torch.nn.Tanh()).eval()
    path = export_module(model, (8, 1, 1), tmp_path_factory.mktemp("rt") / "m.onnx", OnnxConfig())
    return model, path


def test_each_cpu_runner_reports_the_time_of_its_last_call(tiny):
    model, path = tiny
    x = np.random.default_rng(0).standard_normal((2, 8, 1, 1)).astype(np.float32)
    for runner in (TorchRunner(model), OrtRunner(SessionFromOnnx(path, threads=1)), runners_extra.TorchBestRunner(runners_extra.PreparedModule(model, channels_last=True))):
        assert runner.last_inference_time() is None
        runner.infer(x)
        first = runner.last_inference_time()
        assert first is not None and 0 < first < 10.0, type(runner).__name__


def test_a_new_backend_is_timed_without_writing_timing_code():
    class Slow(Runner):
        def infer(self, batch):
            import time

            time.sleep(0.02)
            return batch

    runner = Slow()
    runner.infer(np.zeros(1))
    assert runner.last_inference_time() == pytest.approx(0.02, abs=0.015)


def test_device_time_wins_over_wall_time():
    class Device(Runner):
        def infer(self, batch):
            self._device_seconds = 0.001  # what a GPU runner measures with events, host copies excluded
            return batch

    runner = Device()
    runner.infer(np.zeros(1))
    assert runner.last_inference_time() == 0.001


def test_one_name_per_backend():
    names = set(BACKENDS)
    assert {"torch", "ort", "trt", "torch-compile", "cuda-graph"} <= names and "tensorrt" not in names
