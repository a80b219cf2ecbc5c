"""--out safety (issue 16): a folder gencompress did not write is never replaced, two runs
never silently overwrite each other, and a fresh run never writes into another run's
checkpoint folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gencompress.atomic import MARKER, atomic_dir, claim_output, exclusive, lock_path
from gencompress.bundle import Bundle
from gencompress.errors import GencompressError
from tests.reliability.util import QUICK_BUILD, assert_one_line_error, random_dcgan_bundle, run_main, tree_digest

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict:
    env = dict(os.environ)  # XDG_CACHE_HOME: the session's isolated cache (tests/conftest.py)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("GENCOMPRESS_DEBUG", None)
    return {**env, **extra}


def _user_project(root: Path) -> Path:
    """A user's own folder that happens to hold a manifest.json (and their notes)."""
    project = root / "myproject"
    project.mkdir()
    (project / "manifest.json").write_text(json.dumps({"name": "my project", "schema_version": 2}))
    (project / "notes.txt").write_text("precious notes")
    return project


# --- 1. a folder gencompress did not write is never replaced -------------------------------

WRITERS = [
    ("build", ["build", "--precision", "fp32", "--model", "dcgan", "--random-init", "--out", "myproject"]),
    ("export", ["export", "src", "--out", "myproject"]),
    ("quantize", ["quantize", "src", "--calib-samples", "8", "--out", "myproject"]),
    ("prune", ["prune", "src", "--prune", "0.5", "--distill-steps", "0", "--fid-samples", "0", "--out", "myproject"]),
    ("train", ["train", "dcgan", "--max-steps", "1", "--no-eval", "--no-progress", "--out", "myproject"]),
    ("report", ["report", "src", "--out", "myproject"]),
]


@pytest.mark.parametrize("args", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_a_user_folder_with_a_manifest_is_never_replaced(tmp_path, monkeypatch, args):
    from gencompress.cli import LazyGroup

    if LazyGroup._load(args[0], quiet=True) is None:
        pytest.skip(f"`gencompress {args[0]}` is not importable here")
    project = _user_project(tmp_path)
    random_dcgan_bundle(tmp_path / "src")
    before = tree_digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    outcome = run_main(*args)
    assert_one_line_error(outcome, "output folder myproject exists and was not written by gencompress")
    assert tree_digest(tmp_path) == before  # notes.txt, the manifest, the source: all as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myproject", "src"]  # no lock file, no temp folder
    assert time.monotonic() - started < 60  # refused before the work (a build or training takes minutes)
    assert (project / "notes.txt").read_text() == "precious notes"


def test_our_bundle_with_a_foreign_file_is_not_replaced_and_the_file_is_named(tmp_path, monkeypatch):
    out = random_dcgan_bundle(tmp_path / "out").path
    (out / "report").mkdir()
    (out / "report" / "my-plot.png").write_bytes(b"user's figure")
    before = tree_digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    outcome = run_main("build", "--precision", "fp32", "--model", "dcgan", "--random-init", "--out", "out")
    assert_one_line_error(outcome, "output folder out holds report/my-plot.png, which gencompress did not write")
    assert tree_digest(tmp_path) == before


def test_the_marker_lists_every_entry_and_a_clean_bundle_is_replaced(tmp_path):
    saved = random_dcgan_bundle(tmp_path / "b")
    listed = json.loads((saved.path / MARKER).read_text())["entries"]
    assert listed == sorted(["manifest.json", "weights.safetensors"])
    with claim_output(tmp_path / "b"):  # ours, nothing foreign: claimable
        pass
    random_dcgan_bundle(tmp_path / "b", seed=1)  # and replaced


def test_a_legacy_marker_vouches_for_the_manifest_files_only(tmp_path):
    """Bundles written before the marker listed its entries: the manifest names what we wrote."""
    saved = random_dcgan_bundle(tmp_path / "b")
    (saved.path / MARKER).write_text("written by gencompress: this folder is replaced as a whole on the next write\n")
    with claim_output(saved.path):
        pass
    (saved.path / "notes.txt").write_text("mine")
    with pytest.raises(GencompressError, match="holds notes.txt, which gencompress did not write"):
        with claim_output(saved.path):
            pass
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MARKER).write_text("written by gencompress\n")  # no manifest, no listing
    (tmp_path / "other" / "a.txt").write_text("x")
    with pytest.raises(GencompressError, match="does not list what gencompress wrote"):
        with claim_output(tmp_path / "other"):
            pass


# --- 3. two writers of one --out ------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import gencompress.cli.pipeline as pipeline

    real_resolve = pipeline.resolve_model

    def hold(cfg):  # the output is claimed by now: hold it until the test says go
        print("HOLDING", file=sys.stderr, flush=True)
        go = Path(os.environ["GO_FILE"])
        while not go.exists():
            time.sleep(0.05)
        return real_resolve(cfg)

    pipeline.resolve_model = hold
    pipeline.latency_table = lambda *a, **k: []  # not what this test is about
    from gencompress.cli import main

    main()
    """
)


@pytest.mark.slow
def test_a_second_build_to_the_same_out_is_refused_while_the_first_runs(tmp_path):
    """Two real processes: the second is refused at once naming the first; the first's bundle lands whole."""
    previous = random_dcgan_bundle(tmp_path / "out", seed=7)
    before = tree_digest(previous.path)
    (tmp_path / "holder.py").write_text(HOLDER)
    go = tmp_path / "go"
    common = ["--model", "dcgan", "--random-init", *QUICK_BUILD, "--out", "out"]
    first = subprocess.Popen([sys.executable, "holder.py", "build", "--precision", "fp32", *common], cwd=tmp_path,
                             env=_env(GO_FILE=str(go)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr.readline().strip() == "HOLDING"
        second = subprocess.run([sys.executable, "-m", "gencompress", "build", "--precision", "fp16", *common], cwd=tmp_path,
                                env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"gencompress: error: --out out is being written by another gencompress process (pid {first.pid}); "
            "wait for it to finish, or choose another --out"
        ]
        assert tree_digest(previous.path) == before  # the second touched nothing
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    bundle = Bundle.load(tmp_path / "out")  # complete: every hash verifies
    assert bundle.manifest["metrics"]["build"]["precision"] == "fp32"  # the first's result, not lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "holder.py", "out"]  # lock file removed


def test_a_plain_atomic_write_waits_for_the_holder_and_says_it_replaced_its_result(tmp_path, capfd):
    target = tmp_path / "t"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from gencompress.atomic import atomic_dir
            with atomic_dir({str(target)!r}) as tmp:
                (tmp / "who").write_text("first")
                print("HELD", flush=True)
                sys.stdin.readline()
            """)],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "HELD"
    done = threading.Event()

    def write_second():
        with atomic_dir(target) as tmp:
            (tmp / "who").write_text("second")
        done.set()

    writer = threading.Thread(target=write_second)
    writer.start()
    time.sleep(1.0)
    assert not done.is_set()  # waiting for the holder, not writing beside it
    holder.communicate("\n", timeout=60)
    writer.join(60)
    assert done.is_set() and holder.returncode == 0
    assert (target / "who").read_text() == "second"
    err = capfd.readouterr().err
    assert f"waiting for another gencompress process (pid {holder.pid}) that is writing {target}" in err
    assert f"this run replaces what it wrote to {target}" in err
    assert not lock_path(target).exists()


def test_the_lock_is_reentrant_in_one_process_and_gone_afterwards(tmp_path):
    target = tmp_path / "t"
    with claim_output(target):
        assert lock_path(target).is_file()
        with exclusive(target), atomic_dir(target) as tmp:  # the final write inside the claim
            (tmp / "x").write_text("1")
    assert not lock_path(target).exists() and (target / "x").read_text() == "1"


# --- 5. a fresh run never writes into another run's checkpoint folder ----------------------


def test_train_without_resume_refuses_another_runs_checkpoint_folder(tmp_path, monkeypatch):
    ckpt = tmp_path / "my-gan.ckpt"
    ckpt.mkdir()
    (ckpt / "losses.csv").write_text("step,epoch,d,g\n1,0,0.7,0.7\n")  # the previous run's log
    before = tree_digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    outcome = run_main("train", "dcgan", "--max-steps", "1", "--no-eval", "--no-progress", "--out", "my-gan")
    assert_one_line_error(outcome, "checkpoint folder my-gan.ckpt holds another run's checkpoints and logs; pass --resume")
    assert tree_digest(tmp_path) == before and not (tmp_path / "my-gan").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-gan.ckpt"]


def test_fit_refuses_it_too_before_any_rank_writes(tmp_path):
    from gencompress.train import TrainConfig, fit

    ckpt = tmp_path / "elsewhere"
    ckpt.mkdir()
    (ckpt / "LATEST").write_text("step-00000200\n")
    with pytest.raises(GencompressError, match="holds another run's checkpoints"):
        fit(TrainConfig(model="dcgan", out=str(tmp_path / "g"), checkpoint_dir=str(ckpt), max_steps=1, evaluate=False, progress=False))
    assert [p.name for p in ckpt.iterdir()] == ["LATEST"]


def test_prune_without_resume_refuses_another_runs_checkpoint_folder(tmp_path, monkeypatch):
    random_dcgan_bundle(tmp_path / "src")
    (tmp_path / "p.ckpt").mkdir()
    (tmp_path / "p.ckpt" / "LATEST").write_text("step-00000004\n")
    before = tree_digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    outcome = run_main("prune", "src", "--prune", "0.5", "--distill-steps", "2", "--fid-samples", "0", "--out", "p")
    assert_one_line_error(outcome, "checkpoint folder p.ckpt holds another run's checkpoints")
    assert tree_digest(tmp_path) == before and not (tmp_path / "p").exists()


def test_a_checkpoint_folder_in_use_by_another_process_is_refused(tmp_path):
    from gencompress.train import checkpoint

    root = tmp_path / "run.ckpt"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from gencompress.train import checkpoint
            with checkpoint.claim_root(__import__("pathlib").Path({str(root)!r}), resume=False):
                print("HELD", flush=True)
                sys.stdin.readline()
            """)],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(GencompressError, match=rf"checkpoint folder {root} is being written by another gencompress process \(pid {holder.pid}\)"):
            with checkpoint.claim_root(root, resume=True):
                pass
    finally:
        holder.communicate("\n", timeout=60)
    with checkpoint.claim_root(root, resume=True):  # free again once the holder is done
        pass


def test_an_out_path_with_a_nul_byte_is_a_one_line_error(tmp_path):
    """Found by tests/reliability/test_fuzz.py: os calls raised ValueError (exit 3, 'internal error')."""
    from tests.helpers import run_cli

    result = run_cli("build", "--precision", "int8", "--out", str(tmp_path / "a\x00b"))
    assert result.exit_code == 2 and "NUL byte" in result.output and "internal error" not in result.output
