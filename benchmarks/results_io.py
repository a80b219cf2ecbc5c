"""Result JSON that any parser reads: non-finite floats become the strings "inf"/"-inf"/"nan".

(PSNR of identical outputs is +inf; Python's json would write the non-standard `Infinity`.)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from gencompress.atomic import atomic_write_text

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _encode(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj, key: str = ""):
    if isinstance(obj, str) and obj in _NON_FINITE and key not in ("variant", "model", "backend"):
        return _NON_FINITE[obj]
    if isinstance(obj, dict):
        return {k: _decode(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, key) for v in obj]
    return obj


def dumps(result: dict) -> str:
    return json.dumps(_encode(result), indent=2, allow_nan=False, default=str) + "\n"


def loads(text: str):
    return _decode(json.loads(text))


def write_json(path: str | Path, result: dict) -> Path:
    atomic_write_text(path, dumps(result))
    return Path(path)


def merge(results: list[dict]) -> dict:
    """Several bundles' results as one run: rows, verdicts and grids side by side."""
    if len(results) == 1:
        return results[0]
    merged = dict(results[0])
    merged["model"] = ", ".join(r["model"] for r in results)
    merged["bundle"] = [r.get("bundle") for r in results]
    merged["rows"] = [row for r in results for row in r["rows"]]
    merged["realtime"] = [v for r in results for v in r.get("realtime", [])]
    merged["quality_vs_data"] = [q for r in results for q in ([r["quality_vs_data"]] if r.get("quality_vs_data") else [])]
    merged["sample_grids"] = {f"{r['model']}: {k}": v for r in results for k, v in r.get("sample_grids", {}).items()}
    return merged
