"""Every bad input: one stderr line, exit code 2, no traceback, and nothing changed on disk.

Each case runs the real console entry point (gencompress.cli.main) in-process against a
folder that already holds a good bundle at `out`; after the failure the folder, that
bundle included, must be byte for byte what it was.
"""
from __future__ import annotations

import errno
import json
import os
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file

from gencompress import zoo
from tests.reliability.util import (
    assert_one_line_error,
    dirs_of,
    random_dcgan_bundle,
    replace_weights,
    rewrite_manifest,
    run_main,
    tree_digest,
)

GENS = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn

    class WrongBatch(nn.Module):
        def forward(self, z):
            return torch.zeros(1, 1, 4, 4)

    class IntOut(nn.Module):
        def forward(self, z):
            return torch.zeros(z.shape[0], 1, 4, 4, dtype=torch.int64)

    class InfGen(nn.Module):
        def forward(self, z):
            return torch.full((z.shape[0], 1, 4, 4), float("inf"))

    def small():
        return nn.Sequential(nn.ConvTranspose2d(16, 1, 4, 1, 0), nn.Tanh())

    def wrong_batch():
        return WrongBatch()

    def int_out():
        return IntOut()

    def inf_gen():
        return InfGen()

    def exits():
        sys.exit(3)

    not_callable = 5
    """
)


def _onnx_file(path: Path, dims, n_inputs: int = 1, nan: bool = False) -> None:
    """A tiny ONNX 'generator': Identity (or Log of -1, which gives NaN) on a 4-d input."""
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, dims) for i in range(n_inputs)]
    if nan:
        nodes = [helper.make_node("Neg", ["x0"], ["n"]), helper.make_node("Abs", ["n"], ["a"]),
                 helper.make_node("Neg", ["a"], ["m"]), helper.make_node("Sqrt", ["m"], ["y"])]
    else:
        nodes = [helper.make_node("Identity", ["x0"], ["y"])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One folder of bad inputs, built once (each test checks it is left unchanged)."""
    root = tmp_path_factory.mktemp("bad")
    random_dcgan_bundle(root / "out")  # the pre-existing output every case must leave alone
    (root / "gens.py").write_text(GENS)
    (root / "syntax_err.py").write_text("def broken(:\n")
    (root / "raises_on_import.py").write_text("raise RuntimeError('import-time failure')\n")
    (root / "afile").write_text("x")
    (root / "userdir").mkdir()
    (root / "userdir" / "notes.txt").write_text("precious")
    (root / "emptydir").mkdir()
    (root / "link").symlink_to(root / "emptydir")
    (root / "random.bin").write_bytes(os.urandom(256))
    _bundles(root)
    _checkpoints(root)
    _model_files(root)
    return root


def _bundles(root: Path) -> None:
    good = root / "out"

    def copy(name: str) -> Path:
        import shutil

        return Path(shutil.copytree(good, root / name))

    (copy("b_badjson") / "manifest.json").write_text("{not json")
    m = copy("b_truncated") / "manifest.json"
    m.write_bytes(m.read_bytes()[: len(m.read_bytes()) // 2])
    rewrite_manifest(copy("b_future"), lambda d: d.__setitem__("schema_version", 99))
    rewrite_manifest(copy("b_badkind"), lambda d: d["architecture"].__setitem__("kind", "pickle"))
    rewrite_manifest(copy("b_traversal"), lambda d: d["files"].__setitem__("../../escape.txt", "0" * 64))
    rewrite_manifest(copy("b_unknownzoo"), lambda d: d["architecture"].__setitem__("name", "no_such_net"))
    rewrite_manifest(copy("b_shape"), lambda d: d["input"].__setitem__("shape", [0, 1]))
    w = copy("b_tampered") / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x55
    w.write_bytes(bytes(data))
    (copy("b_noweights") / "weights.safetensors").unlink()
    state = {k: v.clone() for k, v in zoo.build("dcgan").state_dict().items()}
    replace_weights(copy("b_nan"), {**state, "0.weight": torch.full_like(state["0.weight"], float("nan"))})
    replace_weights(copy("b_dtype"), {**state, "0.weight": state["0.weight"].to(torch.int32)})
    replace_weights(copy("b_rank"), {**state, "0.weight": state["0.weight"].flatten()})
    replace_weights(copy("b_missingkey"), {k: v for k, v in state.items() if k != "0.weight"})
    bad = copy("b_badsafetensors")
    (bad / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}xx")
    replace_weights_hash_only(bad)


def replace_weights_hash_only(bundle_dir: Path) -> None:
    from gencompress.bundle import sha256

    weights = bundle_dir / "weights.safetensors"
    rewrite_manifest(bundle_dir, lambda m: m["files"].__setitem__("weights.safetensors", sha256(weights)))


def _checkpoints(root: Path) -> None:
    good = {k: v.clone() for k, v in torch.nn.ConvTranspose2d(16, 1, 4, 1, 0).state_dict().items()}
    good = {f"0.{k}": v for k, v in good.items()}
    torch.save(good, root / "good.pt")
    (root / "empty.pt").write_bytes(b"")
    full = (root / "good.pt").read_bytes()
    (root / "truncated.pt").write_bytes(full[: len(full) // 2])
    torch.save([v for v in good.values()], root / "list.pt")
    torch.save({**good, "0.weight": good["0.weight"] * float("inf")}, root / "inf.pt")
    torch.save({"foo.weight": good["0.weight"]}, root / "wrongkeys.pt")
    save_file(good, str(root / "good.safetensors"))
    st = (root / "good.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(st[: len(st) - 10])


def _model_files(root: Path) -> None:
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(16, 1, 4, 1, 0), torch.nn.Tanh()).eval()
    ts = torch.jit.trace(model, torch.randn(1, 16, 1, 1))
    ts.save(str(root / "gen.ts"))
    data = (root / "gen.ts").read_bytes()
    (root / "truncated.ts").write_bytes(data[: len(data) * 2 // 3])
    (root / "empty.onnx").write_bytes(b"")
    _onnx_file(root / "good.onnx", ["batch", 1, 4, 4])
    full = (root / "good.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(full[: len(full) - 7])
    _onnx_file(root / "dynamic.onnx", ["batch", 1, "h", 4])
    _onnx_file(root / "two_inputs.onnx", ["batch", 1, 4, 4], n_inputs=2)
    _onnx_file(root / "fixed_batch.onnx", [1, 1, 4, 4])
    _onnx_file(root / "nan.onnx", ["batch", 1, 4, 4], nan=True)


IMPORT = ["--model", "gens:small", "--input-shape", "1x16x1x1"]

# (name, arguments after `build`, a fragment of the one-line message)
CASES = [
    # bundle folders: manifest and weights
    ("bundle without manifest", ["--model", "emptydir"], "is not a bundle: no manifest.json"),
    ("manifest not JSON", ["--model", "b_badjson"], "is not valid JSON"),
    ("manifest truncated", ["--model", "b_truncated"], "is not valid JSON"),
    ("manifest from the future", ["--model", "b_future"], "newer than this gencompress reads"),
    ("manifest fails the schema", ["--model", "b_badkind"], "invalid manifest at architecture/kind"),
    ("manifest file name escapes", ["--model", "b_traversal"], "not a plain relative path inside the bundle"),
    ("manifest names unknown zoo model", ["--model", "b_unknownzoo"], "unknown zoo model 'no_such_net'"),
    ("manifest input shape has a zero", ["--model", "b_shape"], "invalid manifest at input/shape/0"),
    ("weights tampered", ["--model", "b_tampered"], "does not match its hash"),
    ("weights missing", ["--model", "b_noweights"], "is missing weights.safetensors"),
    ("weights corrupt safetensors", ["--model", "b_badsafetensors"], "cannot read weights"),
    ("weights NaN", ["--model", "b_nan"], "weight '0.weight' contains NaN or Inf"),
    ("weights wrong dtype", ["--model", "b_dtype"], "is torch.int32, the architecture needs a floating-point"),
    ("weights wrong rank", ["--model", "b_rank"], "weight '0.weight' has shape"),
    ("weights missing a tensor", ["--model", "b_missingkey"], "weights do not fit the architecture: missing"),
    # --checkpoint files
    ("checkpoint missing", [*IMPORT, "--checkpoint", "nope.pt"], "checkpoint nope.pt does not exist"),
    ("checkpoint empty", [*IMPORT, "--checkpoint", "empty.pt"], "checkpoint empty.pt is empty"),
    ("checkpoint truncated", [*IMPORT, "--checkpoint", "truncated.pt"], "cannot read checkpoint truncated.pt"),
    ("checkpoint not a state dict", [*IMPORT, "--checkpoint", "list.pt"], "is not a state dict of tensors"),
    ("checkpoint Inf weights", [*IMPORT, "--checkpoint", "inf.pt"], "contains NaN or Inf"),
    ("checkpoint wrong keys", [*IMPORT, "--checkpoint", "wrongkeys.pt"], "weights do not fit the architecture"),
    ("safetensors truncated", [*IMPORT, "--checkpoint", "truncated.safetensors"], "cannot read weights"),
    ("checkpoint is a folder", [*IMPORT, "--checkpoint", "emptydir"], "is a directory"),
    # TorchScript and ONNX files
    ("TorchScript truncated", ["--model", "truncated.ts", "--input-shape", "1x16x1x1"], "corrupt or truncated archive"),
    ("TorchScript without shape", ["--model", "gen.ts"], "--input-shape is required with a TorchScript file"),
    ("TorchScript wrong shape", ["--model", "gen.ts", "--input-shape", "1x3x1x1"], "does not fit the model"),
    ("unknown file kind", ["--model", "random.bin"], "is neither TorchScript nor ONNX"),
    ("ONNX empty", ["--model", "empty.onnx"], "model file empty.onnx is empty"),
    ("ONNX truncated", ["--model", "truncated.onnx"], "is not a valid ONNX model"),
    ("ONNX missing", ["--model", "missing.onnx"], "does not exist"),
    ("ONNX dynamic spatial dims", ["--model", "dynamic.onnx"], "is dynamic; only the batch axis may be"),
    ("ONNX two inputs", ["--model", "two_inputs.onnx"], "has 2 inputs"),
    ("ONNX fixed batch axis", ["--model", "fixed_batch.onnx"], "the batch axis is fixed at 1"),
    ("ONNX shape mismatch", ["--model", "good.onnx", "--input-shape", "1x2x4x4"], "does not fit good.onnx"),
    ("ONNX NaN outputs", ["--model", "nan.onnx"], "model output contains NaN or Inf"),
    # import specs failing in each way
    ("import spec no module", ["--model", "no_such_mod:make", "--input-shape", "1x16x1x1"], "cannot import 'no_such_mod'"),
    ("import spec syntax error", ["--model", "syntax_err:broken", "--input-shape", "1x16x1x1"], "SyntaxError"),
    ("import spec raises on import", ["--model", "raises_on_import:f", "--input-shape", "1x16x1x1"], "import-time failure"),
    ("import spec no attribute", ["--model", "gens:nothing", "--input-shape", "1x16x1x1"], "has no callable 'nothing'"),
    ("import spec not callable", ["--model", "gens:not_callable", "--input-shape", "1x16x1x1"], "has no callable"),
    ("import spec calls sys.exit", ["--model", "gens:exits", "--input-shape", "1x16x1x1"], "gens:exits() failed: SystemExit"),
    ("import spec malformed", ["--model", "a:b:c"], "is not a bundle folder, a file, an import spec or a zoo name"),
    ("output wrong batch", ["--model", "gens:wrong_batch", "--input-shape", "1x16x1x1"], "does not match input batch"),
    ("output integer dtype", ["--model", "gens:int_out", "--input-shape", "1x16x1x1"], "not an N x C x H x W image tensor"),
    ("output Inf", ["--model", "gens:inf_gen", "--input-shape", "1x16x1x1"], "model output contains NaN or Inf"),
    # options
    ("shape not numbers", ["--input-shape", "1xfoo"], "is not like 1x100x1x1"),
    ("shape with zero", ["--input-shape", "1x0x1x1"], "positive dimensions"),
    ("shape too many dims", ["--input-shape", "1x1x1x1x1x1x1"], "1 to 6 positive dimensions"),
    ("shape negative", ["--input-shape", "1x-3x1x1"], "positive dimensions"),
    ("calib samples zero", ["--calib-samples", "0"], "Invalid value for '--calib-samples'"),
    ("calib samples not a number", ["--calib-samples", "many"], "'many' is not a valid integer"),
    ("unknown target", ["--target", "tpu"], "Invalid value for '--target'"),
    ("unknown option", ["--precison", "int8"], "No such option '--precison'."),
    # --out
    ("out is a file", ["--model", "dcgan", "--random-init", "--out", "afile"], "exists and is not a folder"),
    ("out under a file", ["--model", "dcgan", "--random-init", "--out", "afile/sub"], "cannot create output folder"),
    ("out is a symbolic link", ["--model", "dcgan", "--random-init", "--out", "link"], "is a symbolic link"),
    ("out is a user folder", ["--model", "dcgan", "--random-init", "--out", "userdir"], "was not written by gencompress"),
    ("out on a read-only fs", ["--model", "dcgan", "--random-init", "--out", "/proc/gencompress-out"], "output folder /proc"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_build_input(env, monkeypatch, args, message):
    monkeypatch.chdir(env)
    monkeypatch.syspath_prepend(str(env))
    before, before_dirs = tree_digest(env), dirs_of(env)
    out = [] if "--out" in args else ["--out", "out"]
    assert_one_line_error(run_main("build", "--calib-samples", "8", *args, *out), message)
    assert tree_digest(env) == before  # the pre-existing bundle `out` included
    assert dirs_of(env) == before_dirs  # no temp folder left behind


def test_there_are_at_least_30_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the /proc case covers read-only)")
def test_unwritable_out_fails_before_any_work(env, monkeypatch, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.chdir(env)
    try:
        assert_one_line_error(run_main("build", "--model", "dcgan", "--out", locked / "b"), "is not writable")
    finally:
        locked.chmod(0o700)


def test_unwritable_out_is_refused_before_training_or_quantising(env, monkeypatch):
    """The early check: no stage function is ever reached when --out cannot be written."""
    import gencompress.cli.pipeline as pipeline

    def must_not_run(*a, **k):
        raise AssertionError("a stage ran before the output check")

    monkeypatch.setattr(pipeline, "resolve_model", must_not_run)
    monkeypatch.setattr(pipeline, "apply_precision", must_not_run)
    monkeypatch.chdir(env)
    assert_one_line_error(run_main("build", "--out", "afile/sub"), "cannot create output folder")


def test_full_disk_while_saving_keeps_the_previous_bundle(env, monkeypatch, tmp_path):
    """ENOSPC in the middle of writing the bundle: one line, exit 2, old bundle whole."""
    import gencompress.bundle as bundle_mod
    import gencompress.cli.pipeline as pipeline

    out = tmp_path / "out"
    random_dcgan_bundle(out)
    before = tree_digest(out)

    def full_disk(model, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(bundle_mod, "_save_weights", full_disk)
    monkeypatch.setattr(pipeline, "latency_table", lambda *a, **k: [])  # not what this test is about
    outcome = run_main("build", "--precision", "fp32", "--model", "dcgan", "--random-init", "--out", out)
    assert_one_line_error(outcome, "No space left on device", only_line=False)
    assert f"cannot write {out}: No space left on device" in outcome.stderr
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_outside_an_atomic_write_is_one_line(monkeypatch, tmp_path):
    """An OSError a user fixes (ENOSPC in a temp folder, say) is one line and exit 2."""
    import gencompress.cli.pipeline as pipeline

    monkeypatch.chdir(tmp_path)

    def full_disk(cfg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/gencompress-build-x")

    monkeypatch.setattr(pipeline, "resolve_model", full_disk)
    outcome = run_main("build", "--out", "never-written")
    assert_one_line_error(outcome, "No space left on device: /tmp/gencompress-build-x")
    assert not Path("never-written").exists()


def test_a_bug_is_one_line_exit_3_and_debug_shows_the_traceback(monkeypatch, tmp_path):
    import gencompress.cli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "resolve_model", lambda cfg: {}["boom"])
    outcome = run_main("build", "--out", tmp_path / "o")
    assert outcome.exit_code == 3, outcome
    assert outcome.stderr.strip().splitlines() == [
        "gencompress: internal error: KeyError: 'boom' (rerun with --debug for the traceback)"
    ]
    with pytest.raises(KeyError):
        run_main("--debug", "build", "--out", tmp_path / "o")


def test_debug_reraises_user_errors_with_their_traceback(env, monkeypatch):
    from gencompress.errors import GencompressError

    monkeypatch.chdir(env)
    with pytest.raises(GencompressError, match="does not exist"):
        run_main("--debug", "build", "--model", "missing.onnx", "--out", "out")


def test_unknown_command_and_group_option(env, monkeypatch):
    monkeypatch.chdir(env)
    assert_one_line_error(run_main("frobnicate"), "No such command 'frobnicate'")
    assert_one_line_error(run_main("--verbose", "build"), "No such option")


def test_nan_onnx_reference_check_names_the_problem(env):
    """The NaN fixture really produces NaN (so the case above tests what it says)."""
    import onnxruntime as ort

    y = ort.InferenceSession(str(env / "nan.onnx")).run(None, {"x0": np.ones((1, 1, 4, 4), np.float32)})[0]
    assert np.isnan(y).all()
    assert json.loads((env / "out" / "manifest.json").read_text())["schema_version"] == 2


# --- the other commands ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cmd_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmds")
    import shutil

    random_dcgan_bundle(root / "good")
    shutil.copytree(root / "good", root / "tampered")
    with open(root / "tampered" / "weights.safetensors", "ab") as fh:
        fh.write(b"x")
    (root / "emptydir").mkdir()
    (root / "afile").write_text("x")
    (root / "bad.json").write_text("{bad")
    np.savez(root / "empty.npz", images=np.zeros((0, 1, 32, 32), np.float32))
    np.savez(root / "nan.npz", images=np.full((80, 1, 32, 32), np.nan, np.float32))
    np.savez(root / "rank2.npz", images=np.zeros((80, 32), np.float32))
    np.savez(root / "pickled.npz", images=np.array([{"a": 1}] * 80, dtype=object))
    random_dcgan_bundle(root / "out")  # a pre-existing output, as in the build cases
    return root


COMMAND_CASES = [
    ("export missing bundle", ["export", "missing", "--out", "out"], "is not a bundle folder, a file, an import spec"),
    ("export empty folder", ["export", "emptydir", "--out", "out"], "is not a bundle: no manifest.json"),
    ("export tampered bundle", ["export", "tampered", "--out", "out"], "does not match its hash"),
    ("export out is a file", ["export", "good", "--out", "afile"], "exists and is not a folder"),
    ("export bad batch range", ["export", "good", "--out", "out", "--dynamic-batch", "0:1"], "Invalid value for '--dynamic-batch'"),
    ("export old opset", ["export", "good", "--out", "out", "--opset", "5"], "--opset must be at least 17"),
    ("export bad target", ["export", "good", "--out", "out", "--target", "tpu"], "Invalid value for '--target'"),
    ("bench missing bundle", ["bench", "missing"], "is not a bundle folder, a file, an import spec"),
    ("bench tampered bundle", ["bench", "tampered"], "does not match its hash"),
    ("bench zero batch", ["bench", "good", "--batch", "0"], "positive batch sizes"),
    ("bench batch not numbers", ["bench", "good", "--batch", "a,b"], "not a comma-separated list of integers"),
    ("bench unknown backend", ["bench", "good", "--backend", "nosuch"], "unknown backend(s) nosuch"),
    ("bench zero iterations", ["bench", "good", "--iters", "0"], "Invalid value for '--iters'"),
    ("bench no bundle", ["bench"], "Missing argument 'BUNDLE...'"),
    ("report missing run", ["report", "missing", "--out", "out"], "missing does not exist"),
    ("report corrupt JSON", ["report", "bad.json", "--out", "out"], "bad.json is not valid JSON"),
    ("report no results", ["report", "emptydir", "--out", "out"], "no gencompress bench or sweep results"),
    ("train unknown model", ["train", "nosuch", "--out", "out"], "unknown zoo model 'nosuch'"),
    ("train missing data folder", ["train", "dcgan", "--data", "folder:nowhere", "--out", "out"], "does not exist"),
    ("train empty data folder", ["train", "dcgan", "--data", "folder:emptydir", "--out", "out"], "holds no images"),
    ("train empty npz", ["train", "dcgan", "--data", "npz:empty.npz", "--out", "out"], "holds no images"),
    ("train NaN npz", ["train", "dcgan", "--data", "npz:nan.npz", "--out", "out"], "NaN"),
    ("train wrong-rank npz", ["train", "dcgan", "--data", "npz:rank2.npz", "--out", "out"], "has rank 2"),
    ("train pickled npz", ["train", "dcgan", "--data", "npz:pickled.npz", "--out", "out"], "pickle"),
    ("train unknown data kind", ["train", "dcgan", "--data", "bogus", "--out", "out"], "is not one of"),
    ("train out is a file", ["train", "dcgan", "--out", "afile"], "exists and is not a folder"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in COMMAND_CASES], ids=[c[0] for c in COMMAND_CASES])
def test_bad_input_to_other_commands(cmd_env, monkeypatch, args, message):
    from gencompress.cli import COMMANDS, LazyGroup

    if LazyGroup._load(args[0], quiet=True) is None:
        pytest.skip(f"`gencompress {args[0]}` ({COMMANDS[args[0]][0]}) is not importable here")
    monkeypatch.chdir(cmd_env)
    before, before_dirs = tree_digest(cmd_env), dirs_of(cmd_env)
    extra = ["--max-steps", "1", "--no-eval", "--no-progress"] if args[0] == "train" else []
    assert_one_line_error(run_main(*args, *extra), message)
    assert tree_digest(cmd_env) == before
    assert dirs_of(cmd_env) == before_dirs


def test_at_least_30_distinct_cases_across_commands():
    commands = {c[1][0] for c in COMMAND_CASES} | {"build"}
    assert len(CASES) + len(COMMAND_CASES) >= 60 and commands >= {"build", "export", "bench", "report", "train"}


def test_failed_verification_exits_1_and_keeps_the_previous_output(cmd_env, monkeypatch):
    from gencompress.cli import LazyGroup

    if LazyGroup._load("export", quiet=True) is None:
        pytest.skip("`gencompress export` is not importable here")
    monkeypatch.chdir(cmd_env)
    before, before_dirs = tree_digest(cmd_env), dirs_of(cmd_env)
    outcome = run_main("export", "good", "--out", "out", "--verify-psnr", "1000", "--no-slim", "--eval-samples", "2")
    assert_one_line_error(outcome, "verification FAILED", code=1, only_line=False)
    assert tree_digest(cmd_env) == before
    assert dirs_of(cmd_env) == before_dirs
