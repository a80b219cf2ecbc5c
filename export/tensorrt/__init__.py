"""TensorRT backend, imported lazily: a missing TensorRT breaks nothing else."""
from __future__ import annotations

from gencompress.errors import MissingDependencyError


def import_tensorrt():
    """Return the `tensorrt` module, or explain what to install."""
    try:
        import tensorrt  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken install raising OSError
        raise MissingDependencyError(
            f"TensorRT is not importable here ({type(exc).__name__}: {exc}); install TensorRT 10.x or 11.x "
            "(pip install tensorrt on an x86-64 machine with an NVIDIA GPU; JetPack ships it on Jetsons)"
        ) from None
    return tensorrt


def available() -> bool:
    try:
        import_tensorrt()
    except MissingDependencyError:
        return False
    return True
