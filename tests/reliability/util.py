"""Helpers for the reliability tests: run the real entry point in-process, make inputs."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from click.testing import CliRunner

from gencompress import zoo
from gencompress.bundle import Bundle, sha256
from gencompress.cli import main


# A build's judging and timing cut to what a test of files, locks and signals needs: the
# latency table and the paired ratio are not what these tests check.
QUICK_BUILD = ["--eval-samples", "16", "--bench-seconds", "0.1"]


class Outcome:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.exit_code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"


def run_main(*args) -> Outcome:
    """`gencompress ARGS` through the console entry point (gencompress.cli.main), which is
    what users run: it owns the exit code, signal handling and the catch-all."""
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        stdout, stderr = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return Outcome(code, stdout, stderr)


def assert_one_line_error(outcome: Outcome, message: str, code: int = 2, only_line: bool = True) -> None:
    """Exit `code` and one `gencompress: error:` line holding `message`; with only_line,
    nothing else on stderr (a run that got far may have logged progress before it)."""
    assert outcome.exit_code == code, outcome
    lines = outcome.stderr.strip().splitlines()
    if only_line:
        assert len(lines) == 1, outcome
    errors = [line for line in lines if line.startswith("gencompress: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], outcome
    assert message in errors[0], outcome
    assert "Traceback" not in outcome.stderr + outcome.stdout


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (bytecode caches aside), to prove nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def dirs_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_dir() and "__pycache__" not in p.parts}


def random_dcgan_bundle(path: Path, seed: int = 0) -> Bundle:
    """A saved zoo DCGAN bundle with random weights (no training: milliseconds)."""
    from gencompress.train.pretrained import zoo_bundle

    torch.manual_seed(seed)
    return zoo_bundle("dcgan", zoo.build("dcgan")).save(path)


def rewrite_manifest(bundle_dir: Path, edit) -> None:
    """Apply `edit(manifest)` and write it back (the hashes of other files untouched)."""
    path = Path(bundle_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def replace_weights(bundle_dir: Path, state: dict) -> None:
    """Write new weights into a bundle and re-sign them, as a careful attacker would."""
    from safetensors.torch import save_file

    weights = Path(bundle_dir) / "weights.safetensors"
    save_file(state, str(weights))
    rewrite_manifest(bundle_dir, lambda m: m["files"].__setitem__("weights.safetensors", sha256(weights)))
