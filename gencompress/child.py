"""Timing in a child process: a fresh interpreter whose threads and allocator belong to one job.

The parent writes the job's spec (JSON) and its input (.npy) to a temporary folder and runs
`python -m MODULE SPEC`; the child prints its result as the last line of stdout. Used by the
paired ONNX Runtime timing (export/ort_pair.py) and the CPU runtime choice
(export/cpu_runtime.py), so their ratios are never skewed by the parent's state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from gencompress.errors import GencompressError, first_line


def run_in_child(module: str, spec: dict, batch_input: np.ndarray, what: str) -> dict:
    """Run `module`'s child entry point on `spec` (+ "input": the .npy path); its JSON result.

    `what` names the job in the one-line error if the child fails."""
    with tempfile.TemporaryDirectory(prefix="gencompress-child-") as tmp:
        path = Path(tmp) / "spec.json"
        np.save(Path(tmp) / "input.npy", np.ascontiguousarray(batch_input, dtype=np.float32))
        path.write_text(json.dumps({**spec, "input": str(Path(tmp) / "input.npy")}))
        # The child sets its own thread count; an inherited OMP_NUM_THREADS could differ from it.
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        done = subprocess.run([sys.executable, "-m", module, str(path)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise GencompressError(f"{what} process failed: {lines[-1][:300]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(job: Callable[[dict], dict], argv=None) -> int:
    """The child's side: read the spec named on the command line, print `job(spec)` as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = job(json.loads(Path(argv[0]).read_text()))
    except Exception as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
