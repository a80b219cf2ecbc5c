"""The README's command blocks, run top to bottom in a fresh folder, as a new user runs them.

Each ```bash block is split into commands (backslash continuations joined, comments dropped,
`cat > FILE <<'TAG'` heredocs written) and run in order in one empty folder: `gencompress ...`
in-process through the CLI, `torchrun ... -m gencompress ...` as its single-process command
(two real processes are tested in tests/train/test_fit.py). The set-up block (pip install,
pytest) is CI's own and is checked verbatim by .ci/run, not run here; ```sh blocks show
commands on the user's own files (their model, images, latents) and are not run either.

So that the whole README takes seconds, not hours: zoo models are random-init instead of
trained on digits, and step and iteration counts are cut to a few (the `SMALL` patches below).
Every command still goes through its real option parsing, stage functions and bundle I/O, and
each must exit 0, so a block that needs an earlier one's output, or an option that no longer
exists, fails here.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gencompress.cli import cli

ROOT = Path(__file__).resolve().parents[1]
# The README first, then the docs whose `bash` blocks build on its bundles, in reading order.
DOCUMENTS = ("README.md", "docs/int8.md", "docs/jetson.md", "docs/benchmarks.md", "docs/training.md")
SETUP = ("python3 -m pip install", "python3 -m pytest")  # run verbatim by .ci/run, not here
FENCE = "`" * 3


def readme_commands(text: str) -> list[tuple[str, ...]]:
    """("run", argv...) or ("write", path, content) for every command of every bash block, in order."""
    out: list[tuple[str, ...]] = []
    for block in re.findall(rf"^{FENCE}bash\n(.*?)^{FENCE}", text, flags=re.S | re.M):
        lines = iter(block.replace("\\\n", " ").splitlines())
        for line in lines:
            heredoc = re.match(r"cat > (\S+) <<'(\w+)'$", line.strip())
            if heredoc:
                body = []
                for inner in lines:
                    if inner == heredoc.group(2):
                        break
                    body.append(inner)
                out.append(("write", heredoc.group(1), "\n".join(body) + "\n"))
                continue
            for part in filter(str.strip, line.split("&&")):
                argv = shlex.split(part, comments=True)
                if argv:
                    out.append(("run", *argv))
    return out


def _shrink(module, name: str, **limits):
    """Wrap a stage function so its config's step counts are at most `limits`."""
    real = getattr(module, name)

    def small(*args, **kwargs):
        args = list(args)
        for i, value in enumerate(args):
            if dataclasses.is_dataclass(value):
                # a build that prunes nothing keeps its distillation steps: any other count is refused as an option that does not apply
                kept = {"distill_steps"} if getattr(value, "prune", 0) is None else set()
                args[i] = dataclasses.replace(value, **{k: _cap(getattr(value, k), v) for k, v in limits.items() if hasattr(value, k) and k not in kept})
        for key in ("fid_samples",):
            if key in kwargs:
                kwargs[key] = 0
        return real(*args, **kwargs)

    return small


def _cap(value, limit):
    if callable(limit):
        return limit(value)
    if isinstance(limit, tuple):  # a list option: its first entries
        return tuple(value)[: len(limit)] if value else value
    if isinstance(limit, bool) or value is None:  # a switch, or an unbounded count
        return limit
    return min(value, limit)


def _without(name: str):
    return lambda values: tuple(v for v in values if v != name)


@pytest.fixture
def small(monkeypatch, tmp_path_factory):
    """Random-init zoo models and few steps (see the module docstring)."""
    import importlib

    bench = importlib.import_module("gencompress.benchmarks.bench")  # the package re-exports functions of these names
    sweep = importlib.import_module("gencompress.benchmarks.sweep")
    import gencompress.cli.build_cmd as build_cmd
    import gencompress.cli.pipeline as pipeline
    import gencompress.compress as compress
    import gencompress.export.precision as precision
    import gencompress.train as train
    import gencompress.train.pretrained as pretrained
    from gencompress import zoo

    cache = tmp_path_factory.mktemp("random-init-zoo")

    def random_init(name, *args, **kwargs):
        if not (cache / name / "manifest.json").is_file():
            import torch

            torch.manual_seed(0)
            pretrained.zoo_bundle(name, zoo.build(name)).save(cache / name)
        return pretrained.Bundle.load(cache / name)

    monkeypatch.setattr(pretrained, "get_or_train", random_init)
    monkeypatch.setattr(train, "get_or_train", random_init)  # the package's name, which the build calls
    steps = {"distill_steps": 2, "qat_steps": 2}
    monkeypatch.setattr(build_cmd, "run_build", _shrink(pipeline, "build", latency_iters=2, latency_warmup=1, eval_samples=8, latency_batches=(1,),
                                                         calib_samples=16, **steps))
    # the paired CPU timing starts a child process per build; tests/test_build.py covers it
    monkeypatch.setattr(pipeline, "paired_speedup", lambda *a, **k: None)
    # so does the CPU runtime choice (NNCF twice, then timing); tests/export/test_openvino.py covers it
    monkeypatch.setattr(precision, "choose_cpu_runtime", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "prune", _shrink(compress, "prune", **steps))
    monkeypatch.setattr(compress, "prune", _shrink(compress, "prune", **steps))
    for module in (compress, precision):
        monkeypatch.setattr(module, "quantize", _shrink(compress, "quantize", calib_samples=16, eval_samples=8, **steps))
    # a WGAN-GP step at batch 64 (five critic steps, double backward) costs seconds here
    monkeypatch.setattr(train, "fit", _shrink(train, "fit", max_steps=1, batch_size=8, evaluate=False, samples_every_epoch=False))
    # torch.compile's compile time alone is tens of seconds here (tests/benchmarks covers that backend)
    monkeypatch.setattr(bench, "run", _shrink(bench, "run", iters=2, warmup=1, quality_samples=8, batches=(1,),
                                              backends=_without("torch-compile")))
    monkeypatch.setattr(sweep, "sweep", _shrink(sweep, "sweep", iters=2, warmup=1, quality_samples=8, distill_steps=2,
                                                 prune=(0,), batches=(1,), baselines=("eager",)))


def _run(argv: tuple[str, ...]):
    if argv[0] == "torchrun":  # the command torchrun starts in each process, run once here
        argv = argv[argv.index("gencompress") :]
    assert argv[0] == "gencompress", f"README command the test cannot run: {shlex.join(argv)}"
    return CliRunner().invoke(cli, list(argv[1:]), catch_exceptions=False)


@pytest.mark.slow
def test_readme_blocks_run_in_order(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # `--model my_gen:make_generator` imports from here, as from a shell
    commands = [c for doc in DOCUMENTS for c in readme_commands((ROOT / doc).read_text())]
    skipped = [c for c in commands if c[0] == "run" and any(shlex.join(c[1:]).startswith(s) for s in SETUP)]
    assert len(skipped) == 3  # pip install torch, pip install -e, pytest
    for command in commands:
        if command in skipped:
            continue
        if command[0] == "write":
            Path(command[1]).write_text(command[2])
            continue
        start = time.perf_counter()
        result = _run(command[1:])
        print(f"{time.perf_counter() - start:6.1f} s  {shlex.join(command[1:])}", file=sys.stderr)
        assert result.exit_code == 0, f"{shlex.join(command[1:])}\n{result.output[-3000:]}"
    # what later readers of the README look for
    for path in ("my-bundle/model.onnx", "b3/model.onnx", "q/weights.safetensors", "onnx-bundle/model.onnx",
                 "orin-bundle/build_engine.sh", "report/report.html", "my-gan/manifest.json", "my-vae/manifest.json"):
        assert (tmp_path / path).is_file(), path


def test_every_document_with_commands_is_run():
    with_bash = {str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")] if f"{FENCE}bash" in p.read_text()}
    assert with_bash == set(DOCUMENTS)


def test_readme_parser_reads_heredocs_continuations_and_comments():
    text = (f"{FENCE}bash\nA=1 && gencompress build --int8 \\\n    --out b   # note\ncat > m.py <<'PY'\nx = 1  # kept\nPY\n{FENCE}\n"
            f"{FENCE}\nnot bash\n{FENCE}\n")
    assert readme_commands(text) == [("run", "A=1"), ("run", "gencompress", "build", "--int8", "--out", "b"),
                                     ("write", "m.py", "x = 1  # kept\n")]
