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


def test_timing_children_import_neither_torch_nor_modelopt():
    """The paired ONNX Runtime timing and the CPU runtime timing run in child processes that a
    build starts; importing PyTorch there (through a stage package's __init__) cost 3-4 s a child."""
    import subprocess
    import sys

    children = ("gencompress.benchmarks.ort_pair", "gencompress.export.cpu_runtime", "gencompress.export.openvino")
    code = f"import sys\nfor m in {children!r}: __import__(m)\nprint(sorted(m for m in ('torch', 'onnx', 'modelopt') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]", f"a timing child imports {found}"


def test_the_stage_packages_still_name_their_api():
    import gencompress.benchmarks as benchmarks
    import gencompress.export as export
    from gencompress.export.openvino import BUNDLE_XML

    assert export.OPENVINO_XML == BUNDLE_XML and callable(export.apply_precision) and callable(benchmarks.paired_speedup)
    assert {"apply_precision", "check_export", "OrtRunner"} <= set(dir(export))
    from gencompress.benchmarks import devices  # a submodule that is not an API name still imports

    assert devices.__name__ == "gencompress.benchmarks.devices"
