"""This machine's CPU profile: measured here at run time and cached per CPU model and flags,
never written down, never called measured when it was not."""
from __future__ import annotations

import dataclasses
import json

import pytest

from gencompress.benchmarks import cpu_profile, devices, roofline
from gencompress.benchmarks.estimate import list_devices_text
from gencompress.conditions import cpu_flags, cpu_name


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real measurement on this machine, into a cache of its own (seconds, once per module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        profile = devices.get("cpu")
        return profile, cpu_profile.cached_record(2)


@pytest.fixture
def counted(monkeypatch, tmp_path, measured):
    """A fresh cache, and calibrate() replaced by a counter that returns the real measurement's figures."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def calibrate(threads):
        calls.append(threads)
        return measured[1]["calibration"]

    monkeypatch.setattr(cpu_profile, "calibrate", calibrate)
    return calls


def test_the_cpu_profile_is_measured_here_with_this_machines_flags(measured):
    profile, record = measured
    assert profile.kind == "cpu" and profile.calibrated
    assert profile.cpu_flags == tuple(cpu_flags()) and record["identity"]["cpu_flags"] == cpu_flags()
    assert record["identity"]["cpu"] == cpu_name() and cpu_name() in profile.name
    assert profile.source.startswith(f"measured on this machine at {record['measured_at']}") and "load average" in profile.source
    cal = record["calibration"]
    assert profile.fp32_tflops == pytest.approx(cal["effective_fp32_gflops"] / 1000, rel=1e-12)
    assert profile.int8_tops == pytest.approx(cal["effective_int8_gops"] / 1000, rel=1e-12)
    assert min(cal["effective_fp32_gflops"], cal["effective_int8_gops"], cal["effective_mem_bw_gbs"], cal["op_overhead_us"]) > 0
    # the figures follow from the timed runs: FLOPs (or bytes) over the fastest run
    assert cal["effective_fp32_gflops"] == pytest.approx(cpu_profile.CONV_FLOPS / (cal["raw_ms"]["conv_fp32"] * 1e6), rel=1e-9)
    assert cal["effective_mem_bw_gbs"] == pytest.approx(3 * cpu_profile.ADD_ELEMENTS * 4 / (cal["raw_ms"]["add_192MiB"] * 1e6), rel=1e-9)


def test_the_measurement_is_cached_and_reused_on_the_same_machine(counted):
    first = devices.get("cpu")
    again = devices.get("cpu-epyc-2c")  # the old name means this machine's CPU now
    assert counted == [2] and again == first
    record = json.loads(cpu_profile.cache_path(cpu_profile.identity(2)).read_text())
    assert record["identity"]["cpu_flags"] == cpu_flags()
    devices.get("cpu", threads=1)  # another thread count is another measurement
    assert counted == [2, 1]


def test_a_cached_profile_from_other_flags_is_not_reused(counted, monkeypatch):
    devices.get("cpu")
    assert counted == [2]
    other = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"]
    monkeypatch.setattr(cpu_profile, "cpu_flags", lambda: [f for f in other if f not in cpu_flags()] or ["avx2"])
    profile = devices.get("cpu")
    assert counted == [2, 2] and profile.cpu_flags == tuple(cpu_profile.cpu_flags())


def test_a_copied_cache_file_with_another_identity_is_not_reused(counted):
    ident = cpu_profile.identity(2)
    devices.get("cpu")
    path = cpu_profile.cache_path(ident)
    record = json.loads(path.read_text())
    record["identity"] = {**ident, "cpu_flags": [*ident["cpu_flags"], "amx_int8"]}  # measured elsewhere, same file name
    path.write_text(json.dumps(record))
    devices.get("cpu")
    assert counted == [2, 2]


def test_nothing_says_measured_before_a_measurement(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cpu_profile, "calibrate", lambda threads: pytest.fail("listing must not measure"))
    line = next(l for l in list_devices_text().splitlines() if l.startswith("cpu "))
    assert "not measured yet" in line and "measured on" not in line and "measured here on first use" in line
    # no CPU profile is written down in the registry: the only one is this machine's, measured
    assert not [p.key for p in devices.PROFILES.values() if p.kind == "cpu"]
    assert "cpu" in devices.names()


def test_vector_lanes_follow_the_measured_flags(measured):
    profile, _ = measured
    assert roofline.cpu_vector_lanes(dataclasses.replace(profile, cpu_flags=("avx2", "fma"))) == 8
    assert roofline.cpu_vector_lanes(dataclasses.replace(profile, cpu_flags=("avx2", "avx512f", "avx512_vnni"))) == 16
    assert roofline.cpu_vector_lanes(profile) == (16 if "avx512f" in cpu_flags() else 8)


def test_defaults_name_this_machines_profile_not_the_old_alias():
    """bench's and sweep's defaults say `cpu`; `cpu-epyc-2c` stays only as an alias for old JSONs."""
    from gencompress.benchmarks.bench import BenchConfig
    from tests.helpers import run_cli

    assert BenchConfig().estimate_profile == devices.CPU_KEY
    shown = run_cli("sweep", "--help").output
    assert "cpu,jetson-orin-nano" in shown and "cpu-epyc-2c" not in shown
