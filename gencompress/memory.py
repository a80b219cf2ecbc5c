"""Give memory back between the big steps of a build.

Two kinds of garbage outlive the step that made them, and a 54M-parameter U-Net's `--target cpu`
build held 4 GB through its whole search because of them (1.9 GB before):
- reference cycles holding weights: onnxslim's onnx-graphsurgeon graph (nodes and tensors point
  at each other) keeps a copy of every weight until the cyclic collector next runs, which after
  a few large allocations can be minutes later;
- memory glibc keeps after a free (fragmented heap, per-thread arenas of ONNX Runtime's
  threads): `malloc_trim(0)` returns what is free to the OS.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc


def _libc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_TRIM = _libc_trim()
# A full collection takes ~0.1 s in a build's process (more in a long test run), and a search calls
# this after every candidate: below this size of the graph a step handled there is little to give back.
RELEASE_ABOVE_BYTES = 32 * 2**20


def release(handled_bytes: int | None = None) -> None:
    """Collect reference cycles, then hand freed heap memory back to the OS (glibc only); nothing
    where the step just done handled a graph of under RELEASE_ABOVE_BYTES (None: always)."""
    if handled_bytes is not None and handled_bytes < RELEASE_ABOVE_BYTES:
        return
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
