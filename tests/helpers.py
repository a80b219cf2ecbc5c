"""Test helpers: run the CLI in-process and read its outcome."""
from __future__ import annotations

import hashlib
from pathlib import Path

from click.testing import CliRunner

from gencompress.cli import cli


def run_cli(*args: str):
    """Invoke `gencompress ARGS` through click's CliRunner; stderr kept apart from stdout."""
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, to prove a failed command changed nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }
