"""Calibration and evaluation stream in batches: peak memory stays flat as samples grow.

One subprocess (a clean peak-RSS counter) warms up, then calibrates and evaluates at two
sample counts, 8x apart; peak RSS may grow only by the evaluation outputs it must keep.
A control then runs the same sample count in one batch, to prove the measurement would
catch code that materialises every sample's activations at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from gencompress import zoo
    from gencompress.compress.quantize import QuantConfig, quantize_module
    from gencompress.data import draw_inputs
    from gencompress.export.onnx_export import OnnxConfig, export_module
    from gencompress.export.runners import OrtRunner, SessionFromOnnx, TorchRunner, run_batches

    def peak_mib():
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (a
        # large pytest process), while VmHWM belongs to this process's own address space.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.manual_seed(0)
    model = zoo.build("dcgan").eval()
    onnx_path = export_module(model, (100, 1, 1), Path(sys.argv[1]) / "m.onnx", OnnxConfig())
    ort = OrtRunner(SessionFromOnnx(onnx_path, threads=1))

    def calibrate(n, batch=32):
        quantize_module(model, (100, 1, 1), "normal", QuantConfig(calibrator="max", calib_samples=n, calib_batch=batch), progress=False)

    def evaluate(n, batch=32):  # what build does: torch reference and ORT, same latents
        x = draw_inputs((100, 1, 1), n, "normal", 0).numpy()
        run_batches(TorchRunner(model), x, batch)
        run_batches(ort, x, batch)

    calibrate(64); evaluate(64)  # warm-up: imports, allocator pools, modelopt's quantisers
    peaks = {"warm": peak_mib()}
    for n in (128, 1024):
        calibrate(n); evaluate(n)
        peaks[str(n)] = peak_mib()
    calibrate(1024, batch=1024)  # the control: no streaming
    peaks["unbatched"] = peak_mib()
    print(json.dumps(peaks))
    """
)


@pytest.mark.slow
def test_peak_rss_is_flat_in_the_number_of_samples(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    # Evaluation keeps its outputs (1 x 32 x 32 float32 = 4 KiB a sample, twice, plus the
    # concatenation): about 9 MiB more at 1024 samples. Activations must not add more.
    growth = peaks["1024"] - peaks["128"]
    assert growth < 24, peaks
    # The control shows the counter sees activations: one batch of 1024 needs > 60 MiB more.
    assert peaks["unbatched"] - peaks["1024"] > 60, peaks
