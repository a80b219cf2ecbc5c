"""The training loop end to end: bundle, logs, resume after SIGKILL, torchrun, bad input."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gencompress.bundle import Bundle, load_safetensors
from gencompress.cli import cli
from gencompress.errors import GencompressError
from gencompress.train import TrainConfig, checkpoint, fit
from gencompress.train import objectives as objectives_mod

FAST = dict(batch_size=8, evaluate=False, samples_every_epoch=False, progress=False)


def _env() -> dict:
    # one thread per process: the two runs compared bit for bit use the same kernels
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gencompress", "train", "dcgan", "--out", str(out), "--batch-size", "8",
            "--no-eval", "--no-progress", "--seed", "3", *extra]


def test_vae_fit_writes_decoder_bundle_with_quality_metrics(tmp_path):
    bundle = fit(TrainConfig(model="vae_decoder", out=str(tmp_path / "vae"), max_steps=30, batch_size=32,
                             eval_samples=200, eval_every=0, progress=False))
    loaded = Bundle.load(tmp_path / "vae")  # hashes verify
    metrics = loaded.manifest["metrics"]["train"]
    assert set(metrics["ema"]) >= {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "extractor"}
    assert metrics["ema"]["extractor"] == "digits-classifier"
    assert 1.0 <= metrics["ema"]["is_mean"] <= 10.0  # IS over 10 classes lies in [1, 10]
    # after 30 steps the decoder reconstructs far better than an untrained one (MSE ~0.6 on digits)
    assert metrics["recon_mse"] < 0.3
    assert {"report/samples.png", "report/losses.csv", "encoder.safetensors"} <= set(loaded.manifest["files"])
    header = (tmp_path / "vae" / "report" / "losses.csv").read_text().splitlines()[0]
    assert header == "step,epoch,loss,recon,kl"
    assert loaded.manifest["architecture"]["name"] == "vae_decoder"
    assert bundle.model(torch.randn(2, 16, 1, 1)).shape == (2, 1, 32, 32)


def _wait_for_checkpoint(proc: subprocess.Popen, root: Path, min_step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = (root / "LATEST").is_file() and (root / "LATEST").read_text().strip()
        if found and int(found.split("-")[1]) >= min_step:
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint at step >= {min_step} before the run ended (rc {proc.poll()})")


@pytest.mark.slow
def test_sigkill_then_resume_continues_bit_for_bit(tmp_path):
    args = ("--max-steps", "80", "--epochs", "5", "--checkpoint-every", "20")
    # the uninterrupted reference runs beside the one that is killed (one thread each)
    ref = subprocess.Popen(_train_cmd(tmp_path / "ref", *args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(_train_cmd(tmp_path / "run", *args), env=_env(), stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(proc, tmp_path / "run.ckpt", 20)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert ref.wait(timeout=300) == 0
    assert not (tmp_path / "run").exists()  # no half-written bundle

    # every checkpoint left on disk is whole (hashes match), and one is there to resume from
    kept = list((tmp_path / "run.ckpt").glob("step-*"))
    assert kept and all(checkpoint._complete(p) is not None for p in kept)
    result = subprocess.run(_train_cmd(tmp_path / "run", *args, "--resume"), env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr

    ref, resumed = Bundle.load(tmp_path / "ref").state_dict(), Bundle.load(tmp_path / "run").state_dict()
    assert ref.keys() == resumed.keys()
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    # the loss log is the uninterrupted run's, row for row
    assert (tmp_path / "ref.ckpt/losses.csv").read_text() == (tmp_path / "run.ckpt/losses.csv").read_text()


@pytest.mark.slow
def test_torchrun_two_processes_hold_identical_weights(tmp_path):
    """To the end of the run, final FID/KID included: rank 0 evaluates alone, and its metrics
    must not wait for rank 1 in a cross-process sync (torchmetrics' default under torchrun)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gencompress", "train", "dcgan", "--objective", "wgan-gp", "--max-steps", "3", "--batch-size", "8",
           "--fid-samples", "64", "--no-progress", "--out", str(tmp_path / "ddp")]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    final = manifest["metrics"]["train"]["ema"]
    assert final["fid"] > 0 and final["kid_std"] >= 0 and "is_mean" in final  # the final evaluation ran and was saved
    assert manifest["recipe"][-1]["world_size"] == 2
    # every parameter and buffer of rank 1 equals rank 0's (compared inside the run, over gloo)
    assert manifest["metrics"]["train"]["replica_max_abs_diff"] == 0.0
    # the two ranks saw different data (sharded), so equal weights mean gradients were averaged
    assert manifest["recipe"][-1]["steps"] == 3


def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}

    def exploding(d_fake):
        calls["n"] += 1
        loss = objectives_mod.gan_g_loss(d_fake)
        return loss * float("nan") if calls["n"] > 4 else loss

    monkeypatch.setitem(objectives_mod.OBJECTIVES, "gan", dataclasses.replace(objectives_mod.OBJECTIVES["gan"], g_loss=exploding))
    cfg = TrainConfig(model="dcgan", out=str(tmp_path / "g"), max_steps=10, checkpoint_every=2, **FAST)
    with pytest.raises(GencompressError, match=r"diverged at step 5: generator loss is not finite.*step-00000004"):
        fit(cfg)
    path, meta = checkpoint.latest(tmp_path / "g.ckpt")
    assert meta["step"] == 4 and not (tmp_path / "g").exists()


def _run_cli(*args: str):
    return CliRunner().invoke(cli, ["train", *args, "--no-eval", "--no-progress", "--batch-size", "8", "--max-steps", "2"])


def _assert_one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("gencompress: error:")]
    assert len(lines) == 1 and pattern in lines[0], result.output


def test_bad_data_is_a_one_line_error(tmp_path):
    from PIL import Image

    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(_run_cli("dcgan", "--data", f"folder:{empty}", "--out", str(tmp_path / "o")), "holds no images")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    _assert_one_line_error(_run_cli("dcgan", "--data", f"folder:{broken}", "--out", str(tmp_path / "o")), "cannot read image")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("L", (40, 40)).save(mixed / "grey.png")
    Image.new("RGB", (40, 40)).save(mixed / "colour.png")
    _assert_one_line_error(_run_cli("dcgan", "--data", f"folder:{mixed}", "--out", str(tmp_path / "o")), "mixes channel counts")
    np.savez(tmp_path / "rank3.npz", images=np.zeros((10, 32, 32), np.float32))
    _assert_one_line_error(_run_cli("dcgan", "--data", f"npz:{tmp_path / 'rank3.npz'}", "--out", str(tmp_path / "o")), "has rank 3")
    _assert_one_line_error(_run_cli("dcgan", "--objective", "elbo", "--out", str(tmp_path / "o")), "trains a VAE")
    assert not (tmp_path / "o").exists()


def test_folder_and_npz_data_train_colour_models(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (48, 40), (25 * i, 0, 255 - 25 * i)).save(folder / f"{i}.png")
    bundle = fit(TrainConfig(model="upsample_conv", data=f"folder:{folder}", out=str(tmp_path / "f"), max_steps=2, **FAST))
    assert bundle.manifest["architecture"]["kwargs"]["nc"] == 3
    np.savez(tmp_path / "nhwc.npz", images=np.random.default_rng(0).integers(0, 256, (12, 40, 40, 3), dtype=np.uint8))
    from gencompress.train.datasets import load_dataset

    data = load_dataset(f"npz:{tmp_path / 'nhwc.npz'}")
    assert data.images.shape == (12, 3, 32, 32) and -1 <= data.images.min() and data.images.max() <= 1


def test_resume_from_another_architecture_is_refused(tmp_path):
    fit(TrainConfig(model="upsample_conv", out=str(tmp_path / "a"), max_steps=2, **FAST))
    result = _run_cli("dcgan", "--out", str(tmp_path / "b"), "--checkpoint-dir", str(tmp_path / "a.ckpt"), "--resume")
    _assert_one_line_error(result, "from another architecture")
    # nothing lost: the other run's checkpoint is still whole
    assert checkpoint.latest(tmp_path / "a.ckpt")[1]["step"] == 2


@pytest.mark.parametrize("model,objective", [("resnet_generator", "wgan-gp"), ("dcgan", "wgan")])
def test_every_zoo_gan_trains_with_each_objective_family(tmp_path, model, objective):
    bundle = fit(TrainConfig(model=model, objective=objective, out=str(tmp_path / "m"), max_steps=1, **FAST))
    state = Bundle.load(tmp_path / "m").state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert bundle.manifest["recipe"][-1]["objective"] == objective
    if objective == "wgan":  # weight clipping held every critic weight inside [-0.01, 0.01]
        critic = load_safetensors(tmp_path / "m.ckpt" / "step-00000001" / "models.safetensors")
        weights = [v for k, v in critic.items() if k.startswith("critic.") and k.endswith("weight")]
        assert weights and all(v.abs().max() <= 0.01 + 1e-7 for v in weights)


def test_zoo_vae_decoder_trains_on_first_use_and_is_cached(tmp_path):
    """`build --model vae_decoder` needs a trained decoder: the zoo trains one (ELBO) and caches it,
    encoder included (calibration through the encoder needs it)."""
    from gencompress.train.pretrained import get_or_train

    first = get_or_train("vae_decoder", steps=20, progress=False)
    assert first.manifest["recipe"][-1]["objective"] == "elbo" and first.manifest["recipe"][-1]["steps"] == 20
    assert "encoder.safetensors" in first.files and first.manifest["metrics"]["train"]["recon_mse"] < 1.0
    again = get_or_train("vae_decoder", steps=20, progress=False)
    assert again.path == first.path
    assert again.manifest == first.manifest  # the cached bundle, weight hashes included, not a retrain


def test_the_default_ships_trained_and_other_recipes_train_on_first_use(tmp_path, monkeypatch):
    """`build` with no --model starts from the DCGAN shipped in the package (hash-checked),
    not from three minutes of training; another step count trains and caches; a shipped copy
    whose weights do not match their hash is never used."""
    import shutil

    from gencompress.train import pretrained

    shipped = pretrained.get_or_train("dcgan", progress=False)
    assert shipped.path.parent == pretrained.PACKAGED_DIR
    step = shipped.manifest["recipe"][-1]
    assert (step["step"], step["steps"], step["seed"]) == ("train", pretrained.DEFAULT_STEPS["dcgan"], 0)
    assert "discriminator.safetensors" in shipped.files  # adversarial distillation needs it

    trained = pretrained.get_or_train("dcgan", steps=3, progress=False)
    assert trained.path == pretrained.cached_path("dcgan", 3, 0) and trained.manifest["recipe"][-1]["steps"] == 3
    # through the training stage's one loop (fit: EMA weights, batch size recorded), not a loop of its own
    assert {"objective": "gan", "ema_decay": 0.999, "batch_size": 64}.items() <= trained.manifest["recipe"][-1].items()
    assert "discriminator.safetensors" in trained.files

    corrupt = tmp_path / "weights"
    shutil.copytree(pretrained.PACKAGED_DIR, corrupt)
    weights = corrupt / shipped.path.name / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", corrupt)
    assert pretrained.packaged_bundle("dcgan", pretrained.DEFAULT_STEPS["dcgan"], 0) is None
