"""One voice in the CLI (issue 23): one name per idea across commands, --json FILE everywhere,
--threads wherever latency is timed, a fast `gencompress --help`, and no option silently
ignored (a zoo --checkpoint that does not fit is refused by layer name)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import click
import pytest
import torch
from safetensors.torch import save_file

from gencompress import zoo
from gencompress.bundle import ONNX, Bundle, new_manifest, sha256
from gencompress.cli import COMMANDS, LazyGroup
from gencompress.errors import GencompressError
from tests.export.qdq_graphs import qdq_conv
from tests.reliability.util import assert_one_line_error, run_main

# Every spelling each idea has had: across all commands, exactly one of them may be in use.
IDEAS = {
    "results as JSON": {"--json"},
    "graph precision": {"--precision"},  # with its shorthands --int8/--fp16/--fp32 (test below)
    "pruning ratio": {"--prune", "--ratio"},
    "inputs that judge quality": {"--eval-samples", "--quality-samples", "--verify-samples"},
    "FID/KID samples": {"--fid-samples", "--data-samples"},
    "device profile": {"--device", "--estimate"},
    "PyTorch device": {"--torch-device"},
    "PyTorch dtype": {"--torch-dtype"},
    "export verification threshold": {"--verify-psnr"},
    "quality floor": {"--min-psnr"},
    "latency threads": {"--threads"},
    "output folder": {"--out"},
}
# Commands whose results are a record worth keeping: each takes --json FILE.
RESULT_COMMANDS = ("build", "prune", "quantize", "export", "bench", "sweep", "estimate")


def commands() -> dict[str, click.Command]:
    loaded = {name: LazyGroup._load(name, quiet=True) for name in COMMANDS}
    missing = [name for name, command in loaded.items() if command is None]
    if missing:
        pytest.skip(f"commands not importable here: {missing}")
    return loaded


def options(command: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_each_idea_has_one_spelling_across_commands():
    used = {name: set(options(command)) for name, command in commands().items()}
    for idea, spellings in IDEAS.items():
        in_use = {s for names in used.values() for s in names & spellings}
        assert len(in_use) <= 1, f"{idea} is spelled {sorted(in_use)}: {[c for c, n in used.items() if n & spellings]}"
    assert "--device" not in used["bench"]  # bench's PyTorch device is --torch-device; --device is a profile
    assert "--min-psnr" not in used["export"]  # export's threshold verifies; --min-psnr is the quality floor


def test_an_option_shared_by_commands_is_one_kind_of_thing_everywhere():
    """The same spelling takes the same kind of value (flag or not, one or many) and the same
    parameter name in every command: defined once in options.py, not by hand per command."""
    seen: dict[str, tuple] = {}
    for name, command in commands().items():
        for opt, param in options(command).items():
            kind = (param.is_flag, param.multiple, param.name)
            if opt in ("--precision", "--prune", "--device", "--backend"):  # a list where the command sweeps or compares them
                kind = (param.is_flag, param.multiple)
            assert seen.setdefault(opt, (name, kind))[1] == kind, f"{opt} differs in {name} and {seen[opt][0]}"


def test_int8_is_the_shorthand_of_precision_wherever_one_precision_is_chosen():
    """`gencompress build --int8` (the toolkit's own spelling) is `--precision int8`; a command that
    sweeps a list of precisions has no shorthand."""
    for name, command in commands().items():
        opts = options(command)
        single = "--precision" in opts and not opts["--precision"].multiple and name != "sweep"
        assert all((flag in opts) == single for flag in ("--int8", "--fp16", "--fp32")), name


@pytest.mark.parametrize("argv, precision", [((), "int8"), (("--int8",), "int8"), (("--fp16",), "fp16"), (("--precision", "fp32"), "fp32"),
                                             (("--fp32", "--precision", "fp32"), "fp32")])
def test_build_precision_from_the_shorthand_or_the_option(tmp_path, monkeypatch, argv, precision):
    import gencompress.cli.build_cmd as build_cmd

    seen = []

    def record(cfg):  # stands in for the build: what precision did the options give it?
        seen.append(cfg.precision)
        raise GencompressError("stopped by the test")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(build_cmd, "run_build", record)
    run_main("build", *argv, "--out", "o")
    assert seen == [precision]


def test_two_precisions_contradict_each_other(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_main("build", "--int8", "--precision", "fp16", "--out", "o")
    assert_one_line_error(outcome, "contradict each other")
    assert not (tmp_path / "o").exists()


def test_json_takes_a_file_in_every_command_with_results():
    all_commands = commands()
    for name in RESULT_COMMANDS:
        json_opt = options(all_commands[name]).get("--json")
        assert json_opt is not None, f"{name} has no --json FILE"
        assert not json_opt.is_flag and json_opt.metavar == "FILE", name


def test_threads_wherever_latency_is_timed():
    for name, command in commands().items():
        opts = options(command)
        if {"--bench-seconds", "--iters", "--batch"} & set(opts):
            assert "--threads" in opts, f"{name} times latency without --threads"
    assert "--threads" in options(commands()["build"])


def test_the_command_list_is_each_commands_own_first_line():
    """`gencompress --help` prints COMMANDS' one-line help without importing the commands: it must
    say what each command's own docstring says."""
    for name, command in commands().items():
        assert COMMANDS[name][2] == command.help.strip().splitlines()[0], name


def test_top_level_help_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from gencompress.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "modelopt") if m in sys.modules)
        print("HEAVY", heavy, file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr, out.stderr
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


@pytest.mark.parametrize("argv, hint", [
    (["prune", "x", "--ratio", "0.5"], "(--ratio is now --prune)"),
    (["export", "x", "--min-psnr", "30"], "(--min-psnr is now --verify-psnr)"),
    (["bench", "x", "--device", "cpu"], "(--device is now --torch-device)"),
    (["sweep", "x", "--estimate", "cpu-epyc-2c"], "(--estimate is now --device)"),
])
def test_a_removed_spelling_is_no_such_option_with_a_hint(tmp_path, monkeypatch, argv, hint):
    monkeypatch.chdir(tmp_path)
    outcome = run_main(*argv, "--out", "o") if argv[0] in ("build", "prune", "export") else run_main(*argv)
    assert_one_line_error(outcome, "No such option")
    assert hint in outcome.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_is_a_file_not_the_next_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_main("build", "--json", "--out", "o"), "takes a FILE (- for stdout), not --out")
    assert_one_line_error(run_main("build", "--json", "nowhere/r.json", "--out", "o"), "does not exist")
    assert_one_line_error(run_main("estimate", "b", "--json", "a\0b"), "the path holds a NUL byte")
    assert list(tmp_path.iterdir()) == []


# --- no option silently ignored -------------------------------------------------------------


@pytest.fixture
def dcgan_checkpoints(tmp_path):
    """The zoo DCGAN's own weights, one with a layer twice as wide, one missing a layer."""
    torch.manual_seed(1)
    state = zoo.build("dcgan").state_dict()
    save_file(state, str(tmp_path / "fits.safetensors"))
    wide = dict(state, **{"0.weight": torch.randn(100, 256, 4, 4)})
    save_file(wide, str(tmp_path / "wide.safetensors"))
    save_file({k: v for k, v in state.items() if k != "3.weight"}, str(tmp_path / "missing.safetensors"))
    return tmp_path, state


@pytest.mark.parametrize("checkpoint, message", [
    ("wide.safetensors", "layer '0.weight' is 100x256x4x4 in checkpoint wide.safetensors, 100x128x4x4 in the model"),
    ("missing.safetensors", "missing in checkpoint missing.safetensors: '3.weight' (128x64x4x4 in the model)"),
])
def test_a_zoo_checkpoint_that_does_not_fit_is_refused_by_layer_name(dcgan_checkpoints, monkeypatch, checkpoint, message):
    root, _ = dcgan_checkpoints
    monkeypatch.chdir(root)
    before = sorted(p.name for p in root.iterdir())
    outcome = run_main("build", "--model", "dcgan", "--checkpoint", checkpoint, "--out", "out")
    assert_one_line_error(outcome, f"weights do not fit the architecture: {message}")
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written


def test_a_zoo_checkpoint_that_fits_is_loaded_and_recorded(dcgan_checkpoints):
    from gencompress.cli.pipeline import BuildConfig, resolve_model

    root, state = dcgan_checkpoints
    bundle, name = resolve_model(BuildConfig(model="dcgan", checkpoint=str(root / "fits.safetensors")))
    loaded = bundle.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert bundle.manifest["recipe"][-1] == {"step": "load", "weights": "checkpoint", "checkpoint": "fits.safetensors",
                                             "checkpoint_sha256": sha256(root / "fits.safetensors")}
    assert name == "dcgan (fits.safetensors)"


@pytest.mark.parametrize("args, message", [
    (["--model", "dcgan", "--random-init", "--checkpoint", "fits.safetensors"], "--random-init and --checkpoint contradict each other"),
    (["--model", "dcgan", "--trust-pickle"], "--trust-pickle applies only to a --checkpoint"),
    (["--model", "g.onnx", "--checkpoint", "fits.safetensors"], "--checkpoint applies to a zoo name or a package.module:callable; g.onnx is a ONNX file"),
    (["--model", "dcgan", "--cpu-runtime", "onnxruntime"], "--cpu-runtime chooses the runtime of --target cpu; --target gpu runs TensorRT"),
    (["--model", "dcgan", "--precision", "fp32", "--calib-samples", "8"], "--calib-samples applies to --precision int8, not fp32"),
    (["--model", "dcgan", "--precision", "fp16", "--min-psnr", "30"], "--min-psnr applies to --precision int8, not fp16"),
    (["--model", "dcgan", "--distill-steps", "5"], "--distill-steps distils after pruning; it needs --prune"),
    (["--model", "dcgan", "--calib-from", "latents", "--data", "npz:d.npz"], "--calib-from latents does not apply with --data"),
])
def test_build_refuses_an_option_that_does_not_apply(dcgan_checkpoints, monkeypatch, args, message):
    root, _ = dcgan_checkpoints
    monkeypatch.chdir(root)
    (root / "g.onnx").write_bytes(b"not read: refused before")
    assert_one_line_error(run_main("build", *args, "--out", "out"), message)
    assert not (root / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--calibrator", "entropy"], "--calibrator applies to a PyTorch model (modelopt); g.onnx is a onnx graph, quantised as ONNX"),
    (["--qat-steps", "5"], "--qat-steps applies to a PyTorch model (modelopt); g.onnx is a onnx graph"),
    (["--target", "cpu", "--deconv-weight-axis", "0"], "--deconv-weight-axis sets TensorRT's Q/DQ form; --target cpu rewrites"),
])
def test_build_refuses_modelopt_options_for_a_graph(tmp_path, monkeypatch, args, message):
    import onnx

    from tests.export.qdq_graphs import plain_conv

    monkeypatch.chdir(tmp_path)
    onnx.save(plain_conv(), "g.onnx")
    assert_one_line_error(run_main("build", "--model", "g.onnx", *args, "--out", "out"), message, only_line=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_commands_refuse_options_that_do_not_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv, message in [
        (["bench", "b", "--backend", "ort", "--torch-dtype", "fp16"], "--torch-dtype does not apply here"),
        (["bench", "b", "--inception-weights", "i.pt"], "--inception-weights does not apply here: FID/KID runs only with --fid-samples N"),
        (["export", "b", "--workspace-mib", "512", "--out", "o"], "--workspace-mib does not apply here"),
        (["quantize", "b", "--qat-lr", "0.1", "--out", "o"], "--qat-lr does not apply here"),
        (["quantize", "b", "--calibrator", "max", "--percentile", "99", "--out", "o"], "--percentile does not apply here"),
        (["prune", "b", "--prune", "0.5", "--distill-steps", "0", "--gan-weight", "0.1", "--out", "o"], "--gan-weight does not apply here"),
        (["train", "dcgan", "--no-eval", "--fid-samples", "10", "--out", "o"], "--fid-samples does not apply here"),
        (["estimate", "b", "--device", "jetson-orin-nano", "--threads", "4"], "--threads does not apply here: ONNX Runtime is measured"),
    ]:
        assert_one_line_error(run_main(*argv), message)
    assert list(tmp_path.iterdir()) == []


# --- a graph that fails the Q/DQ lint is never written -----------------------------------------


def test_export_refuses_a_graph_that_fails_the_qdq_lint_naming_the_nodes(tmp_path, monkeypatch):
    import onnx

    monkeypatch.chdir(tmp_path)
    onnx.save(qdq_conv(weight_axis=1), "bad.onnx")  # Conv weight scales along axis 1, not 0
    outcome = run_main("export", "bad.onnx", "--precision", "int8", "--out", "o")
    assert_one_line_error(outcome, "fails the Q/DQ lint", only_line=False)
    assert "at node(s) w_dq; first: w_dq: [weight-axis]" in outcome.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_builds_export_check_refuses_a_graph_that_fails_the_lint(tmp_path):
    """What `build` runs on the ONNX it is about to write: a lint failure is an error, not a log line."""
    import onnx

    from gencompress.export import check_export

    onnx.save(qdq_conv(weight_axis=1), str(tmp_path / ONNX))
    manifest = new_manifest({"kind": "onnx", "name": ONNX}, {"name": "x", "shape": [4, 8, 8], "dtype": "float32"}, {"range": [-1, 1]})
    manifest["recipe"] = [{"step": "export", "format": "onnx", "precision": "int8"}]
    bundle = Bundle(manifest)
    bundle.files[ONNX] = tmp_path / ONNX
    with pytest.raises(GencompressError, match=r"fails the Q/DQ lint .* at node\(s\) w_dq; first: w_dq: \[weight-axis\]"):
        check_export(bundle, "gpu", tmp_path)
    onnx.save(qdq_conv(weight_axis=0), str(tmp_path / ONNX))  # the same graph, scales on the right axis, passes
    assert check_export(bundle, "gpu", tmp_path)["qdq_lint"]["passed"]


# --- narrow exception catches: bugs surface -------------------------------------------------------


def test_a_command_whose_import_has_a_bug_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "buggy_cmd.py").write_text("raise ValueError('a bug at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "buggy", ("buggy_cmd", "buggy", "A command with a bug."))
    with pytest.raises(ValueError, match="a bug at import"):
        LazyGroup._load("buggy", quiet=True)
    monkeypatch.setitem(COMMANDS, "missing", ("no_such_module_here", "missing", "A command whose dependency is absent."))
    assert LazyGroup._load("missing", quiet=True) is None


def test_onnx_export_lets_a_bug_in_the_model_surface(tmp_path):
    from gencompress.export.onnx_export import OnnxConfig, export_module

    class Buggy(torch.nn.Module):
        def forward(self, x):
            return {"a": x}["b"]  # a KeyError is the model's bug, not "ONNX export failed"

    with pytest.raises(KeyError):
        export_module(Buggy(), (4,), tmp_path / "m.onnx", OnnxConfig())
