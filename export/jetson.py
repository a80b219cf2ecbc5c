"""Jetson deployment bundles: the ONNX plus scripts that build and time the engine on the device.

A TensorRT engine is specific to the GPU and the TensorRT version that built it, so a
Jetson bundle never carries one: it carries `build_engine.sh` (trtexec, with the flags
right for the TensorRT version the target's JetPack ships; or gencompress itself when it
is installed on the device), `run_bench.sh` and a README for the person at the device.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gencompress import __version__
from gencompress.errors import GencompressError

from .profiles import BatchProfile, shape_text
from .tensorrt.versions import TrtVersion, float_layer_precision, trtexec_bench_args, trtexec_build_args, typing_mode

TEMPLATES = ("build_engine.sh", "run_bench.sh", "README.md")


@dataclass(frozen=True)
class JetsonTarget:
    name: str
    device: str
    jetpack: str
    l4t: str
    tensorrt: str  # the TensorRT version that JetPack ships
    cuda: str
    memory_gib: int
    workspace_mib: int  # builder scratch memory: a share of the board's unified memory


# Orin: JetPack 6.1/6.2 (L4T 36.4) ship TensorRT 10.3 and CUDA 12.6.
# Thor: JetPack 7.0 (L4T 38.2) ships TensorRT 10.13 and CUDA 13.0; 10.12+ deprecates weak
# typing, so Thor bundles build strongly typed networks (the TensorRT 11 way).
JETSON_TARGETS = {
    t.name: t
    for t in (
        JetsonTarget("jetson-orin-nano", "Jetson Orin Nano (8 GB)", "6.2", "36.4", "10.3.0", "12.6", 8, 1024),
        JetsonTarget("jetson-orin-nx", "Jetson Orin NX (16 GB)", "6.2", "36.4", "10.3.0", "12.6", 16, 2048),
        JetsonTarget("jetson-agx-orin", "Jetson AGX Orin (64 GB)", "6.2", "36.4", "10.3.0", "12.6", 64, 4096),
        JetsonTarget("jetson-thor", "Jetson AGX Thor (128 GB)", "7.0", "38.2", "10.13.3", "13.0", 128, 8192),
    )
}


def get_target(name: str) -> JetsonTarget:
    try:
        return JETSON_TARGETS[name]
    except KeyError:
        raise GencompressError(f"unknown Jetson target {name!r}; known: {', '.join(JETSON_TARGETS)}") from None


def _command(args: list[str], indent: str) -> str:
    """The elements of a bash array: one argument per line keeps the scripts readable and diffable."""
    return f"\n{indent}".join(['"$TRTEXEC"', *(shlex.quote(a) for a in args)])


def render_values(target: JetsonTarget, precision: str, input_name: str, per_sample, profile: BatchProfile,
                  graph_float: str = "fp32") -> dict[str, str]:
    version = TrtVersion.parse(target.tensorrt)
    build = trtexec_build_args(version, precision, "model.onnx", "engine.plan", input_name, per_sample, profile,
                               target.workspace_mib, "timing.cache")
    bench = trtexec_bench_args("engine.plan", input_name, per_sample, 1)
    # run_bench.sh loops over batch sizes: put the loop variable in place of the shape.
    bench = [a if not a.startswith("--shapes=") else "--shapes=" + f"{input_name}:BATCHx{shape_text(per_sample)}" for a in bench]
    batches = sorted({profile.min, profile.opt, profile.max})
    return {
        "TARGET": target.name,
        "DEVICE": target.device,
        "JETPACK": target.jetpack,
        "L4T": target.l4t,
        "TENSORRT": target.tensorrt,
        "TENSORRT_MM": ".".join(target.tensorrt.split(".")[:2]),
        "CUDA": target.cuda,
        "TYPING": typing_mode(version),
        "PRECISION": precision,
        "FLOAT_LAYERS": f"layers without Q/DQ build in {float_layer_precision(version, precision, graph_float).upper()}",
        "PROFILE": str(profile),
        "INPUT": input_name,
        "PER_SAMPLE": shape_text(per_sample),
        "BATCHES": " ".join(map(str, batches)),
        "BUILD_COMMAND": _command(build, "  "),
        "BENCH_COMMAND": _command(bench, "    ").replace("BATCHx", '"${batch}"x'),
        "GENCOMPRESS_VERSION": __version__,
    }


def render(template: str, values: dict[str, str]) -> str:
    """Fill @@NAME@@ placeholders (not $NAME: the scripts use shell variables)."""
    text = resources.files("gencompress.export").joinpath("templates", template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise RuntimeError(f"template {template} has an unfilled placeholder")  # a bug, not a user error
    return text


def write_jetson_files(folder: Path, target_name: str, precision: str, input_name: str, per_sample,
                       profile: BatchProfile | None = None, graph_float: str = "fp32") -> dict[str, Path]:
    """Write the device scripts and README into `folder`; return {bundle name: path}.
    `graph_float`: what the graph computes in outside its INT8 layers (onnx_utils.float_compute)."""
    target = get_target(target_name)
    values = render_values(target, precision, input_name, per_sample, profile or BatchProfile(), graph_float)
    written = {}
    for name in TEMPLATES:
        path = folder / name
        path.write_text(render(name, values))
        if name.endswith(".sh"):
            path.chmod(0o755)
        written[name] = path
    return written


def target_record(target_name: str) -> dict:
    t = get_target(target_name)
    return {"target": t.name, "device": t.device, "jetpack": t.jetpack, "l4t": t.l4t, "tensorrt": t.tensorrt,
            "cuda": t.cuda, "typing": typing_mode(TrtVersion.parse(t.tensorrt))}
