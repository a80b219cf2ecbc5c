"""`gencompress prune` / `quantize` through click: thin commands, one-line errors, exit 2."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gencompress.bundle import Bundle, sha256
from gencompress.cli import cli


def _run(args):
    return CliRunner().invoke(cli, args)


def test_prune_writes_a_smaller_bundle(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    before = sha256(src.path / "weights.safetensors")
    result = _run(["prune", str(src.path), "--prune", "0.5", "--distill-steps", "5", "--out", str(tmp_path / "out"), "--json", "-"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["macs_reduction"] >= 3.0
    steps = [s["step"] for s in Bundle.load(tmp_path / "out").manifest["recipe"]]
    assert steps[-2:] == ["prune", "distill"]
    assert sha256(src.path / "weights.safetensors") == before
    # random-init bundle: no training data named, so no FID; the report has the sizes
    assert "data_quality" not in stats and "| MACs per image |" in (tmp_path / "out" / "report" / "prune.md").read_text()


def test_bad_ratio_is_one_line_exit_2(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["prune", str(src.path), "--prune", "1.2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["gencompress: error: Invalid value for '--prune': 1.2 is not a fraction in (0, 1); "
                                                  "0.5 removes half of each layer's channels (see 'cli prune --help')"]
    assert not (tmp_path / "out").exists()


def test_output_over_input_is_refused(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["prune", str(src.path), "--prune", "0.5", "--out", str(src.path)])
    assert result.exit_code == 2 and "--out must differ" in result.stderr


def test_quantize_with_budget_reports_layers(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["quantize", str(src.path), "--min-psnr", "20", "--calib-samples", "32", "--out", str(tmp_path / "q"), "--json", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["precision"]) == {"0", "3", "6", "9"}
    assert data["sensitivity"]["psnr_db"] >= 20


def test_impossible_budget_exit_2_and_no_output(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["quantize", str(src.path), "--min-psnr", "900", "--calib-samples", "32", "--out", str(tmp_path / "q")])
    assert result.exit_code == 2 and "no INT8 mix meets PSNR >= 900 dB vs FP32: the best reached" in result.stderr
    assert not (tmp_path / "q").exists()


def _weights(path) -> dict:
    from gencompress.bundle import load_safetensors

    return load_safetensors(path / "weights.safetensors")


def test_interrupted_distillation_resumes_to_the_same_student(tiny_dcgan, tmp_path):
    """A run cut off after its step-4 checkpoint and resumed ends with the weights of an
    uninterrupted run (same latents per step, Adam and the cosine schedule restored)."""
    import shutil

    import torch

    src = tiny_dcgan.save(tmp_path / "in")
    args = ["prune", str(src.path), "--prune", "0.5", "--distill-steps", "6", "--checkpoint-every", "2"]
    whole = _run([*args, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    ckpt = tmp_path / "whole.ckpt"
    assert sorted(p.name for p in ckpt.glob("step-*")) == ["step-00000004", "step-00000006"]
    # the cut-off run: its newest checkpoint is step 4
    cut = tmp_path / "cut.ckpt"
    shutil.copytree(ckpt / "step-00000004", cut / "step-00000004")
    (cut / "LATEST").write_text("step-00000004\n")
    resumed = _run([*args, "--resume", "--checkpoint-dir", str(cut), "--out", str(tmp_path / "resumed")])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.stderr and "(step 4)" in resumed.stderr
    distill_step = Bundle.load(tmp_path / "resumed").manifest["recipe"][-1]
    assert distill_step["step"] == "distill" and distill_step["resumed_at_step"] == 4
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_resume_refuses_another_run_or_no_checkpoint(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    args = ["prune", str(src.path), "--distill-steps", "2", "--checkpoint-every", "1"]
    none = _run([*args, "--prune", "0.5", "--resume", "--out", str(tmp_path / "a")])
    assert none.exit_code == 2 and none.stderr.strip().splitlines() == [
        f"gencompress: error: --resume: no distillation checkpoint in {tmp_path / 'a.ckpt'}"]
    assert _run([*args, "--prune", "0.5", "--out", str(tmp_path / "a")]).exit_code == 0
    other = _run([*args, "--prune", "0.25", "--resume", "--checkpoint-dir", str(tmp_path / "a.ckpt"), "--out", str(tmp_path / "b")])
    assert other.exit_code == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "from a different run (ratio: checkpoint 0.5, this run 0.25)" in other.stderr
    assert not (tmp_path / "b").exists()


def test_encoder_calibration_of_a_bundle_without_encoder_is_exit_2(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["quantize", str(src.path), "--calib-from", "encoder", "--calib-samples", "32", "--out", str(tmp_path / "q")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--calib-from encoder: the bundle has no encoder.safetensors" in result.stderr
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_adversarial_distillation_uses_the_bundled_discriminator(tmp_path):
    """A GAN bundle from `gencompress train` carries its discriminator; --gan-weight fine-tunes
    it against the student while the student learns to fool it. It also names its data, so
    pruning measures FID/KID against it."""
    import math

    import torch

    from gencompress.compress.distill import load_discriminator
    from gencompress.loading import load_spec
    from gencompress.train import TrainConfig, fit

    fit(TrainConfig(model="dcgan", out=str(tmp_path / "gan"), max_steps=3, batch_size=8, evaluate=False,
                    samples_every_epoch=False, progress=False))
    bundle = load_spec(str(tmp_path / "gan"))
    assert "discriminator.safetensors" in bundle.files
    disc = load_discriminator(bundle)
    with torch.no_grad():
        assert disc.eval()(bundle.model(torch.randn(2, *bundle.input_shape))).numel() == 2
    result = _run(["prune", str(tmp_path / "gan"), "--prune", "0.5", "--distill-steps", "4", "--gan-weight", "0.1",
                   "--checkpoint-every", "2", "--fid-samples", "200", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = Bundle.load(tmp_path / "out")
    step = out.manifest["recipe"][-1]
    assert step["step"] == "distill" and step["adversarial"] and step["gan_weight"] == 0.1
    assert math.isfinite(step["final_discriminator_loss"]) and step["final_discriminator_loss"] > 0
    # the bundle names its training data: FID/KID before and after distillation, in metrics and report
    dq = out.manifest["metrics"]["prune"]["data_quality"]
    assert dq["data"] == "digits" and dq["samples"] == 200
    assert all(dq[k]["fid"] > 0 and dq[k]["extractor"] == "digits-classifier" for k in ("original", "pruned_no_distill", "pruned_distilled"))
    report = (tmp_path / "out" / "report" / "prune.md").read_text()
    assert f"| pruned, no distillation | {dq['pruned_no_distill']['fid']:.3f} |" in report
    assert "FID vs digits (digits-classifier): original" in result.stdout


def test_gan_weight_without_a_discriminator_is_exit_2(tiny_dcgan, tmp_path):
    src = tiny_dcgan.save(tmp_path / "in")
    result = _run(["prune", str(src.path), "--prune", "0.5", "--distill-steps", "2", "--gan-weight", "0.1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--gan-weight needs the original discriminator" in result.stderr
    assert not (tmp_path / "o").exists()
