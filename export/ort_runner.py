"""ONNX Runtime on the CPU as a backend: SessionFromOnnx builds a session, OrtRunner runs it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gencompress.errors import GencompressError, first_line

from .runner_base import Loader, Runner


ORT_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


class SessionFromOnnx(Loader):
    """An ONNX Runtime CPU session on `path`: `threads` intra-op threads, one inter-op thread,
    graph optimisation `optimization` (one of ORT_OPTIMIZATIONS). A file ONNX Runtime cannot
    load is a one-line GencompressError."""

    def __init__(self, path: str | Path, threads: int = 2, optimization: str = "all"):
        if optimization not in ORT_OPTIMIZATIONS:
            raise GencompressError(f"unknown ONNX Runtime optimisation level {optimization!r}; known: {', '.join(ORT_OPTIMIZATIONS)}")
        self.path, self.threads, self.optimization = path, threads, optimization

    def __call__(self):
        import onnxruntime as ort

        levels = dict(zip(ORT_OPTIMIZATIONS, (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = levels[self.optimization]
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime cannot load {self.path}: {first[:300]}") from None

    def conditions(self) -> dict:
        return {"intra_op_threads": self.threads, "graph_optimization": self.optimization}


def _session_conditions(session) -> dict:
    """What a session built elsewhere was built with, read back from its own options."""
    import onnxruntime as ort

    opts = session.get_session_options()
    levels = {ort.GraphOptimizationLevel.ORT_DISABLE_ALL: "disable", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC: "basic",
              ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED: "extended", ort.GraphOptimizationLevel.ORT_ENABLE_ALL: "all"}
    # 0 threads: ONNX Runtime's own choice (one per physical core)
    return {"intra_op_threads": opts.intra_op_num_threads, "graph_optimization": levels.get(opts.graph_optimization_level, "all")}


class OrtRunner(Runner):
    """ONNX Runtime on the CPU: the reference for every INT8 number measured here."""

    name = "ort"

    def __init__(self, load: SessionFromOnnx | object, name: str | None = None):
        self.session = self._load(load, name)
        self.input_name = self.session.get_inputs()[0].name

    def conditions(self) -> dict:
        """What a timing taken with this runner depends on (goes next to every number)."""
        import onnxruntime as ort

        built = self.loader.conditions() if self.loader is not None else _session_conditions(self.session)
        return {"backend": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider", **built}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            first = first_line(exc)
            raise GencompressError(f"ONNX Runtime failed to run the model: {first[:300]}") from None

    def close(self) -> None:
        self.session = None
