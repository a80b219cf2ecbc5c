"""TensorRT backend, imported lazily: a missing TensorRT breaks nothing else."""
from __future__ import annotations

from gencompress.errors import MissingDependencyError, import_optional


def import_tensorrt():
    """Return the `tensorrt` module, or explain what to install."""
    return import_optional("tensorrt", "TensorRT", "install TensorRT 10.x or 11.x (pip install tensorrt on an x86-64 machine "
                           "with an NVIDIA GPU; JetPack ships it on Jetsons)")


def available() -> bool:
    try:
        import_tensorrt()
    except MissingDependencyError:
        return False
    return True
