"""Engine compatibility and integrity checks (pure: no TensorRT needed)."""
from __future__ import annotations

import hashlib

import pytest

from gencompress.errors import GencompressError
from gencompress.export.tensorrt import available
from gencompress.export.tensorrt.compat import check_engine_file, check_engine_record

RECORD = {"tensorrt_version": "10.3.0", "gpu": "Orin (nvgpu)"}


def test_same_version_and_gpu_passes():
    check_engine_record(RECORD, "10.3.0.30", "Orin (nvgpu)")


@pytest.mark.parametrize("version,gpu,words", [("10.13.3", "Orin (nvgpu)", "TensorRT 10.3.0"), ("10.3.0", "NVIDIA H100", "built on Orin")])
def test_foreign_engine_refused(version, gpu, words):
    with pytest.raises(GencompressError, match=words) as info:
        check_engine_record(RECORD, version, gpu)
    assert "\n" not in str(info.value)


def test_missing_record_refused():
    with pytest.raises(GencompressError, match="no build record"):
        check_engine_record({}, "10.3.0", "x")


def test_truncated_engine_refused(tmp_path):
    data = b"ftrt" + bytes(range(256)) * 4
    record = {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    path = tmp_path / "engine.plan"
    path.write_bytes(data)
    assert check_engine_file(path, record) == data
    path.write_bytes(data[:100])
    with pytest.raises(GencompressError, match="truncated"):
        check_engine_file(path, record)
    path.write_bytes(data[:-1] + b"x")
    with pytest.raises(GencompressError, match="sha256"):
        check_engine_file(path, record)


def test_tensorrt_missing_is_explained():
    if available():
        pytest.skip("TensorRT is importable here; this checks the message where it is not")
    from gencompress.errors import MissingDependencyError
    from gencompress.export.tensorrt import import_tensorrt

    with pytest.raises(MissingDependencyError, match="install TensorRT"):
        import_tensorrt()
