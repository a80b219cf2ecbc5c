"""The build chains stage APIs: `gencompress/cli/pipeline.py` imports each stage through its
package (`gencompress.compress`, `gencompress.export`, `gencompress.benchmarks`, `gencompress.train`),
never a stage's inner module, so the stages own their logic and the pipeline stays a chain."""
from __future__ import annotations

import ast
from pathlib import Path

import gencompress.cli.pipeline as pipeline

STAGES = ("compress", "export", "benchmarks", "train")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module] + \
        [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]


def _stage_internals(modules: list[str]) -> list[str]:
    """Modules under a stage package below its root: gencompress.export.runners, not gencompress.export."""
    return [m for m in modules if m.split(".")[:2] in (["gencompress", s] for s in STAGES) and len(m.split(".")) > 2]


def test_pipeline_imports_only_stage_apis():
    inner = _stage_internals(_imported_modules(Path(pipeline.__file__)))
    assert not inner, f"pipeline.py reaches into stage internals: {inner}"


def test_the_check_sees_an_inner_import():
    """The check can fail: an inner import is found."""
    assert _stage_internals(["gencompress.export.runners", "gencompress.export", "gencompress.metrics"]) == ["gencompress.export.runners"]
