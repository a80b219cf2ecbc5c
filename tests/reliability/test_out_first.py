"""Every command checks --out before its work (issue 15): a foreign non-empty folder is a
one-line error, exit 2, in well under the time the work would take, and nothing is left
behind (no OUT.ckpt/ from a distillation that should never have started)."""
from __future__ import annotations

import pytest
import torch

from gencompress import zoo
from gencompress.train.pretrained import zoo_bundle
from tests.helpers import run_cli, tree_digest


@pytest.fixture
def foreign_out(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("not a bundle")
    return out


@pytest.fixture
def tiny_saved(tmp_path):
    torch.manual_seed(0)
    return zoo_bundle("dcgan", zoo.build("dcgan", nz=16, ngf=16).eval(), nz=16, ngf=16).save(tmp_path / "src")


def _no_work(monkeypatch):
    """Stage functions that fail the test if called: the --out check must come first."""
    import gencompress.compress as compress
    import gencompress.train as train

    def forbidden(*a, **k):
        raise AssertionError("the stage ran before --out was checked")

    for module, name in ((compress, "prune"), (compress, "quantize"), (train, "fit")):
        monkeypatch.setattr(module, name, forbidden)


@pytest.mark.parametrize("command", [
    ["prune", "{src}", "--prune", "0.5", "--distill-steps", "5"],
    ["quantize", "{src}", "--calib-samples", "8"],
    ["train", "dcgan", "--max-steps", "1", "--no-eval"],
])
def test_out_is_checked_before_the_work(command, tiny_saved, foreign_out, monkeypatch):
    _no_work(monkeypatch)
    before = tree_digest(foreign_out.parent)
    args = [a.format(src=tiny_saved.path) for a in command]
    result = run_cli(*args, "--out", foreign_out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "was not written by gencompress" in lines[0]
    assert tree_digest(foreign_out.parent) == before
    assert not (foreign_out.parent / "mine.ckpt").exists()
