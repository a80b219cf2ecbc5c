"""Rebuild whatever PyTorch model a saved bundle holds: FP32, pruned, or INT8 fake-quant."""
from __future__ import annotations

from torch import nn

from gencompress.bundle import Bundle
from gencompress.errors import GencompressError
from gencompress.loading import model_from_bundle

from .quantize import restore_quantized


def load_model(bundle: Bundle) -> nn.Module:
    """The bundle's model in eval mode.

    Pruned layers come back narrower from their saved shapes (gencompress.loading);
    a modelopt-quantised bundle is replayed from its recipe and saved amax values.
    """
    if bundle.model is not None:
        return bundle.model.eval()
    if bundle.manifest["architecture"]["kind"] not in ("zoo", "import"):
        raise GencompressError(f"a {bundle.manifest['architecture']['kind']} bundle holds no PyTorch model")
    if bundle.form.fake_quant_weights:
        return restore_quantized(bundle)
    return model_from_bundle(bundle)
