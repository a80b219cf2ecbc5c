"""Long work shows progress with an ETA on stderr, at a terminal and in a log; nothing when progress is off."""
from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

from gencompress import progress

# tqdm's [elapsed<remaining] field: the remaining time is the ETA
ETA = re.compile(r"\d+/\d+ \[\d\d:\d\d<\d\d:\d\d")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def log_now(monkeypatch):
    """stderr is a log (not a TTY), and the log's bars show from the first step."""
    monkeypatch.setattr(progress, "LOG_DELAY_S", 0.0)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)


def _eta_lines(text: str, desc: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(desc) and ETA.search(line)]


def test_first_use_zoo_training_shows_an_eta(tmp_path, monkeypatch, capsys, log_now):
    """get_or_train (the README's `--model upsample_conv` trained 816 s in silence): a bar with an ETA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from gencompress.train.pretrained import get_or_train

    get_or_train("upsample_conv", steps=3, seed=7, progress=True)
    err = capsys.readouterr().err
    assert "training zoo model 'upsample_conv'" in err
    lines = _eta_lines(err, "train upsample_conv")
    assert lines and "100% 3/3 [" in lines[-1], err
    assert "\r" not in err  # a log gets whole lines, not carriage-return redraws


def test_training_progress_off_writes_nothing(tmp_path, monkeypatch, capsys, log_now):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from gencompress.train.pretrained import get_or_train

    get_or_train("upsample_conv", steps=3, seed=7, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("on", [True, False])
def test_fit_bar(tmp_path, capsys, log_now, on):
    from gencompress.train import TrainConfig, fit

    fit(TrainConfig(model="dcgan", out=str(tmp_path / "g"), max_steps=3, batch_size=8, evaluate=False,
                    samples_every_epoch=False, progress=on))
    lines = _eta_lines(capsys.readouterr().err, "train dcgan")
    assert bool(lines) == on


def test_terminal_gets_a_live_bar_at_once(monkeypatch):
    """At a terminal the bar is drawn from the start (no log delay), redrawn in place."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for _ in progress.bar(range(4), "calibrate"):
        pass
    assert "\r" in terminal.getvalue() and ETA.search(terminal.getvalue())


def test_short_loops_leave_a_log_clean(capsys):
    """Not a TTY, default delay: a loop done in well under LOG_DELAY_S prints nothing (tests and CI stay quiet)."""
    assert progress.LOG_DELAY_S >= 10
    for _ in progress.bar(range(100), "quick"):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("on", [True, False])
def test_build_loops_show_an_eta(capsys, log_now, on):
    """The build's evaluation batches and latency rows (run_batches and measure with a label, as build gives them)."""
    import torch

    from gencompress.benchmarks.latency import measure
    from gencompress.export.runners import TorchRunner, run_batches

    runner = TorchRunner(torch.nn.Conv2d(1, 1, 3).eval())
    x = np.zeros((8, 1, 8, 8), np.float32)
    run_batches(runner, x, 2, "evaluate" if on else "")
    measure(runner, x[:2], iters=5, warmup=1, label="ort int8 b2" if on else "", seconds=5.0)
    err = capsys.readouterr().err
    assert bool(_eta_lines(err, "evaluate")) == on and bool(_eta_lines(err, "time ort int8 b2")) == on, err


def test_a_long_stage_is_named_in_a_log(capsys, log_now):
    timer = progress.StageTimer(progress=True)
    with timer.stage("compress (int8)"):
        pass
    assert "gencompress: compress (int8) done in 0 s" in capsys.readouterr().err
    quiet = progress.StageTimer(progress=False)
    with quiet.stage("compress (int8)"):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("json_to", ["file", "stdout"])
def test_json_on_stdout_means_no_progress(tmp_path, log_now, json_to):
    """`build --json -` is read by another program: stdout is the JSON alone and stderr has no bar;
    `--json FILE` keeps the bars (the control: the same build shows them)."""
    import json

    from tests.helpers import run_cli

    target = str(tmp_path / "r.json") if json_to == "file" else "-"
    result = run_cli("build", "--model", "dcgan", "--random-init", "--precision", "fp32", "--target", "cpu", "--batch", "1",
                     "--iters", "3", "--warmup", "1", "--bench-seconds", "0.2", "--out", tmp_path / "b", "--json", target)
    assert result.exit_code == 0, result.output
    eta_lines = [line for line in result.stderr.splitlines() if ETA.search(line)]
    if json_to == "file":
        assert eta_lines and "evaluate" in result.stderr, result.stderr
        return
    assert json.loads(result.stdout)["precision"] == "fp32"
    assert not eta_lines and "gencompress:" not in result.stderr, result.stderr
