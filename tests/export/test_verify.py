"""Verification helpers: module scopes from exporter node names, Polygraphy-style reports."""
from __future__ import annotations

import pytest

from gencompress.errors import VerificationError
from gencompress.export.verify import _scope, format_result, require


@pytest.mark.parametrize("node,module", [("/10/body/body.1/Conv", "10.body.1"), ("/stem/stem.1/MatMul", "stem.1"),
                                         ("/0/ConvTranspose", "0"), ("/a/a.b/a.b.c/Gemm", "a.b.c"), ("Conv_3", "")])
def test_scope_to_module_name(node, module):
    assert _scope(node) == module


def _result(psnr, passed):
    return {"psnr_db": psnr, "max_abs_error": 0.1, "cosine": 0.99, "samples": 4, "seed": 0, "min_psnr": 40.0,
            "passed": passed, "reference": "PyTorch", "test": "ONNX Runtime (CPU)"}


def test_report_lines():
    text = format_result(_result(35.123, False))
    assert "tolerance used: --verify-psnr 40.00" in text and "needed to pass: --verify-psnr <= 35.12" in text
    assert text.rstrip().endswith("FAILED")
    assert format_result(_result(float("inf"), True)).rstrip().endswith("PASSED")


def test_require_raises_exit_1():
    require(_result(50.0, True))
    with pytest.raises(VerificationError, match=r"tolerance needed: --verify-psnr 35\.12") as info:
        require(_result(35.129, False))
    assert info.value.exit_code == 1
