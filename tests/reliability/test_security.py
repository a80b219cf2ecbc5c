"""Untrusted files: no code runs from a pickle, no bundle reaches outside itself,
manifests are versioned and migrated, tampered content is refused."""
from __future__ import annotations

import copy
import json
import os
import pathlib
import textwrap

import pytest
import torch

from gencompress.bundle import SCHEMA_VERSION, Bundle, migrate, parse_manifest, validate_manifest
from gencompress.errors import GencompressError
from gencompress.loading import load_checkpoint, load_spec
from tests.reliability.util import assert_one_line_error, random_dcgan_bundle, rewrite_manifest, run_main, tree_digest


class _PlantedPayload:
    """Unpickling this calls pathlib.Path.write_text: code execution, if it is ever allowed."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.target, "pwned"))


def _plant(tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    layer = torch.nn.ConvTranspose2d(16, 1, 4, 1, 0)
    torch.save({"0.weight": layer.weight.data, "0.bias": layer.bias.data, "payload": _PlantedPayload(marker)}, evil)
    assert not marker.exists()
    return evil, marker


def test_planted_pickle_is_refused_and_runs_nothing(tmp_path):
    evil, marker = _plant(tmp_path)
    with pytest.raises(GencompressError, match="--trust-pickle"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_planted_pickle_through_the_cli(tmp_path, monkeypatch):
    evil, marker = _plant(tmp_path)
    (tmp_path / "gen_small.py").write_text(textwrap.dedent(
        """
        from torch import nn

        def make():
            return nn.Sequential(nn.ConvTranspose2d(16, 1, 4, 1, 0), nn.Tanh())
        """
    ))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome = run_main("build", "--model", "gen_small:make", "--input-shape", "1x16x1x1", "--checkpoint", evil, "--out", "o")
    assert_one_line_error(outcome, "refusing to unpickle it (pass --trust-pickle only if you trust where it came from)")
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_the_planted_pickle_really_is_malicious(tmp_path):
    """The control: with trust_pickle the payload runs, so the refusal above is what saves us."""
    evil, marker = _plant(tmp_path)
    with pytest.raises(GencompressError):  # loaded, then found not to be a state dict
        load_checkpoint(evil, trust_pickle=True)
    assert marker.read_text() == "pwned"


def test_weights_only_checkpoints_still_load(tmp_path):
    layer = torch.nn.Linear(3, 2)
    torch.save({"state_dict": {"module.weight": layer.weight.data, "module.bias": layer.bias.data}}, tmp_path / "ok.pt")
    state = load_checkpoint(tmp_path / "ok.pt")
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], layer.weight.data)


# --- bundles: tampering, traversal, links ----------------------------------------------


@pytest.fixture
def saved(tmp_path):
    return random_dcgan_bundle(tmp_path / "b")


@pytest.mark.parametrize("name", ["weights.safetensors", "extra/notes.txt"])
def test_any_tampered_file_is_refused(saved, tmp_path, name):
    if name != "weights.safetensors":  # a bundle with one more file, then tamper with it
        notes = tmp_path / "notes.txt"
        notes.write_text("original")
        bundle = Bundle.load(saved.path)
        bundle.model = None
        bundle.files = {name: notes}
        saved = bundle.save(tmp_path / "b2")
        assert (saved.path / name).read_text() == "original"
    target = saved.path / name
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(GencompressError, match=f"{name} does not match its hash"):
        Bundle.load(saved.path)


def test_manifest_cannot_name_files_outside_the_bundle(saved, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    rewrite_manifest(saved.path, lambda m: m["files"].__setitem__("../secret.txt", "0" * 64))
    with pytest.raises(GencompressError, match="not a plain relative path"):
        Bundle.load(saved.path)


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../x", "a\\..\\x", "./x", "a//b", "manifest.json", ""])
def test_save_never_writes_outside_its_folder(tmp_path, name):
    src = tmp_path / "src.txt"
    src.write_text("x")
    bundle = Bundle(json.loads(json.dumps(random_dcgan_bundle(tmp_path / "b").manifest)), None, {name: src})
    with pytest.raises(GencompressError, match="not a plain relative path"):
        bundle.save(tmp_path / "deep" / "out")
    assert not (tmp_path / "deep" / "out").exists()


def test_a_link_inside_a_bundle_is_refused(saved, tmp_path):
    outside = tmp_path / "outside.bin"
    weights = saved.path / "weights.safetensors"
    outside.write_bytes(weights.read_bytes())
    weights.unlink()
    weights.symlink_to(outside)  # same bytes, same hash: only the link gives it away
    with pytest.raises(GencompressError, match="is a link or lies outside the bundle"):
        Bundle.load(saved.path)


def test_bundle_naming_an_import_spec_fails_cleanly_when_the_code_is_absent(saved, monkeypatch, tmp_path):
    rewrite_manifest(saved.path, lambda m: m.__setitem__("architecture", {"kind": "import", "spec": "absent_pkg_xyz.gen:make"}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GencompressError, match="cannot import 'absent_pkg_xyz.gen'"):
        load_spec(str(saved.path))


# --- manifest versions --------------------------------------------------------------------


def test_version_1_manifests_are_migrated(saved):
    v1 = copy.deepcopy(saved.manifest)
    v1["schema_version"] = 1
    del v1["hash_algorithm"]
    with pytest.raises(GencompressError, match="must be migrated first"):
        validate_manifest(v1)
    current = migrate(copy.deepcopy(v1))
    assert current["schema_version"] == SCHEMA_VERSION == 2 and current["hash_algorithm"] == "sha256"
    validate_manifest(current)


def test_a_version_1_bundle_on_disk_loads_and_resaves_as_current(saved, tmp_path):
    def to_v1(m):
        m["schema_version"] = 1
        del m["hash_algorithm"]

    rewrite_manifest(saved.path, to_v1)
    loaded = Bundle.load(saved.path)
    assert loaded.manifest["schema_version"] == SCHEMA_VERSION
    from gencompress.loading import model_from_bundle

    loaded.model = model_from_bundle(loaded)
    resaved = loaded.save(tmp_path / "v2")
    assert json.loads((resaved.path / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    "version, message",
    [(99, "newer than this gencompress reads"), (0, "is not supported"), (True, "is not supported"),
     ("2", "is not supported"), (None, "is not supported"), (2.0, "is not supported")],
)
def test_unknown_versions_are_refused(saved, version, message):
    text = json.dumps({**saved.manifest, "schema_version": version})
    with pytest.raises(GencompressError, match=message):
        parse_manifest(text)


def test_hash_algorithm_is_pinned(saved):
    with pytest.raises(GencompressError, match="invalid manifest at hash_algorithm"):
        parse_manifest(json.dumps({**saved.manifest, "hash_algorithm": "md5"}))


def test_deeply_nested_json_is_a_clean_error():
    with pytest.raises(GencompressError):
        parse_manifest("[" * 100_000 + "]" * 100_000)


def test_oversized_manifest_is_refused_unread(saved):
    with open(saved.path / "manifest.json", "ab") as fh:
        fh.truncate(17 << 20)  # sparse: no 17 MiB written
    with pytest.raises(GencompressError, match="not a gencompress manifest"):
        Bundle.load(saved.path)


# --- --out: never delete what is not ours -------------------------------------------------


def test_out_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    before = tree_digest(home)
    with pytest.raises(GencompressError, match="was not written by gencompress"):
        random_dcgan_bundle(home)
    assert tree_digest(home) == before


def test_files_are_created_with_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        saved = random_dcgan_bundle(tmp_path / "b")
    finally:
        os.umask(old)
    assert (saved.path.stat().st_mode & 0o777) == 0o755


@pytest.mark.parametrize("spec, message", [
    ("os:abort", "names a standard-library module"),  # would kill this very test process
    ("antigravity:x", "names a standard-library module"),  # would open a browser on import
    ("builtins:breakpoint", "names a standard-library module"),
    ("reexports_abort:abort", "is defined in 'posix', not in package 'reexports_abort'"),
])
def test_a_bundle_cannot_name_side_effects_as_its_architecture(saved, monkeypatch, tmp_path, spec, message):
    (tmp_path / "reexports_abort.py").write_text("from os import abort\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rewrite_manifest(saved.path, lambda m: m.__setitem__("architecture", {"kind": "import", "spec": spec}))
    with pytest.raises(GencompressError, match=message):
        load_spec(str(saved.path))
