"""Will this engine run here? Pure checks on what the manifest recorded (no TensorRT needed).

A serialised engine only deserialises with the TensorRT version that built it (same
major.minor.patch; TensorRT's version-compatible mode aside) and is tuned for one GPU.
Asking TensorRT to load a foreign engine gives a long C++ log; we answer in one line first.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from gencompress.errors import GencompressError

from .versions import TrtVersion


def check_engine_record(record: dict, tensorrt_version: str, gpu: str) -> None:
    """Raise when the engine was built by another TensorRT version or on another GPU."""
    if not record or "tensorrt_version" not in record:
        raise GencompressError("engine has no build record in the manifest (TensorRT version, GPU): rebuild it here")
    built, here = TrtVersion.parse(record["tensorrt_version"]), TrtVersion.parse(tensorrt_version)
    if built != here:
        raise GencompressError(
            f"engine was built with TensorRT {record['tensorrt_version']}, this machine has {tensorrt_version}: "
            "rebuild it here (gencompress export BUNDLE --format engine)"
        )
    if record.get("gpu") and record["gpu"] != gpu:
        raise GencompressError(f"engine was built on {record['gpu']}, this GPU is {gpu}: rebuild it here")


def check_engine_file(path, record: dict) -> bytes:
    """The engine's bytes, refusing a truncated or altered file (size and sha256 from the record)."""
    path = Path(path)
    if not path.is_file():
        raise GencompressError(f"engine {path} does not exist")
    data = path.read_bytes()
    size = record.get("size_bytes")
    if size is not None and len(data) != size:
        raise GencompressError(f"engine {path} is {len(data)} bytes, the manifest says {size}: truncated or replaced")
    digest = record.get("sha256")
    if digest and hashlib.sha256(data).hexdigest() != digest:
        raise GencompressError(f"engine {path} does not match its sha256 in the manifest (corrupt or replaced)")
    if len(data) == 0:
        raise GencompressError(f"engine {path} is empty")
    return data
