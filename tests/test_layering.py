"""The build chains stage APIs: `gencompress/cli/pipeline.py` imports each stage through its
package (`gencompress.compress`, `gencompress.export`, `gencompress.benchmarks`, `gencompress.train`),
never a stage's inner module, so the stages own their logic and the pipeline stays a chain."""
from __future__ import annotations

import ast
from pathlib import Path

import gencompress.cli.pipeline as pipeline

STAGES = ("train", "compress", "export", "benchmarks")  # the pipeline's order: a stage imports only earlier ones


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

    children = ("gencompress.export.ort_pair", "gencompress.export.cpu_runtime", "gencompress.export.openvino")
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


# -- the import graph of the installed package -----------------------------------------
#
# Every import counts, a function-level (lazy) one too: it runs as soon as the function does,
# and a circle through it is still a circle a reader has to untangle. A lazy package's names
# (gencompress/lazy.py) count as imports of the submodule that defines them.

CORE = "gencompress"


def package_roots() -> dict[str, Path]:
    """Where each installed package's sources lie: the core and the four stage folders."""
    import importlib.util

    names = (CORE, *(f"{CORE}.{s}" for s in STAGES))
    return {name: Path(importlib.util.find_spec(name).submodule_search_locations[0]) for name in names}


def package_modules() -> dict[str, Path]:
    """Every module of the installed package by its gencompress.* name."""
    found = {}
    for package, root in package_roots().items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return found


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A lazy package's `lazy_exports(__name__, {...})` names: {public name: "module[:attr]"}."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            return eval(compile(ast.Expression(node.args[1]), "<lazy_exports>", "eval"), {})  # our own dict literal
    return {}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the package modules it imports}, relative imports resolved; `from P import x`
    is an import of P.x where that is a module (or a lazy name of P's), else of P."""
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    lazy = {name: _lazy_exports(tree) for name, tree in trees.items()}
    graph = {}
    for name, tree in trees.items():
        package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                source = ".".join(p for p in (base, node.module) if p)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        edges.add(f"{source}.{alias.name}")
                    elif alias.name in lazy.get(source, {}):
                        edges.add(f"{source}.{lazy[source][alias.name].partition(':')[0]}")
                    else:
                        edges.add(source)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules (Tarjan), as a path A -> B -> ... -> A."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle_in(group, graph) for group in groups]


def _circle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle through the group's first module (breadth-first), for the message."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return sorted(group)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _is_core(module: str) -> bool:
    """The core: gencompress.* outside the stages and the CLI (which knows every stage)."""
    return _stage(module) is None and not module.startswith(f"{CORE}.cli")


def test_the_package_has_no_import_circles():
    found = cycles(import_graph(package_modules()))
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def _points_up(module: str, target: str) -> bool:
    """The core imports no stage; a stage imports the core and earlier stages only (STAGES is
    the pipeline's order), so export/ never imports benchmarks/."""
    here, there = _stage(module), _stage(target)
    if there is None:
        return False
    return _is_core(module) or (here is not None and STAGES.index(there) > STAGES.index(here))


def test_imports_point_one_way():
    graph = import_graph(package_modules())
    upward = [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets) if _points_up(m, t)]
    assert not upward, f"imports that point up: {upward}"


def test_the_direction_check_can_fail():
    assert _points_up("gencompress.export.cpu_runtime", "gencompress.benchmarks.ort_pair")
    assert _points_up("gencompress.fid", "gencompress.train.loop")
    assert not _points_up("gencompress.benchmarks.bench", "gencompress.export.runners")
    assert not _points_up("gencompress.cli.pipeline", "gencompress.benchmarks.report")


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The checks can fail: a function-level import, a relative one, a lazy package name and a
    two-module circle are all found."""
    pkg = tmp_path / "gencompress" / "export"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('from gencompress.lazy import lazy_exports\n'
                                     '__getattr__, __dir__ = lazy_exports(__name__, {"Thing": "b", **{"Other": "c:Thing"}})\n')
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("from gencompress.export import Other\nimport gencompress.benchmarks.sweep\n")
    (pkg / "c.py").write_text("from . import a\n")
    bench = tmp_path / "gencompress" / "benchmarks"
    bench.mkdir()
    (bench / "sweep.py").write_text("")
    modules = {"gencompress.export": pkg / "__init__.py", **{f"gencompress.export.{m}": pkg / f"{m}.py" for m in "abc"},
               "gencompress.benchmarks.sweep": bench / "sweep.py"}
    graph = import_graph(modules)
    assert graph["gencompress.export.a"] == {"gencompress.export.b"}
    assert graph["gencompress.export.b"] == {"gencompress.export.c", "gencompress.benchmarks.sweep"}
    assert graph["gencompress.export.c"] == {"gencompress.export.a"}
    assert cycles(graph) == [["gencompress.export.a", "gencompress.export.b", "gencompress.export.c", "gencompress.export.a"]]
    assert cycles({"x": {"y"}, "y": set()}) == []
