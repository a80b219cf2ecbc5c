"""What changes between TensorRT versions, as pure functions (tested without TensorRT).

- 10.0: implicit batch is gone; every network is explicit batch, so the old
  EXPLICIT_BATCH creation flag is deprecated and ignored (we pass no flag for it).
- 10.0-10.11: weak typing is the default; a Q/DQ INT8 network needs BuilderFlag.INT8
  (and no calibrator: the scales are in the graph) and FP16 for the layers it keeps float
  (else they build in FP32); an FP16 build needs BuilderFlag.FP16.
- 10.12: weak typing is deprecated; we build strongly typed networks (STRONGLY_TYPED
  creation flag, `trtexec --stronglyTyped`): precision comes from the graph itself.
- 11.x: weak typing is removed (no INT8/FP16 builder flags, no --int8/--fp16 in trtexec);
  every network is strongly typed, so no flag is needed at all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from gencompress.errors import GencompressError

from ..profiles import BatchProfile, shape_text

STRONG_TYPING_FROM = (10, 12)  # weak typing deprecated here: build strongly typed from now on
STRONG_ONLY_FROM = (11, 0)  # weak typing removed


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "TrtVersion":
        match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not match:
            raise GencompressError(f"cannot read a TensorRT version from {text!r}")
        major, minor, patch = (int(g) if g else 0 for g in match.groups())
        if major < 10:
            raise GencompressError(f"TensorRT {text} is too old: gencompress supports TensorRT 10.x and 11.x")
        return cls(major, minor, patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def typing_mode(version: TrtVersion) -> str:
    """'weak' (precision from builder flags), 'strong-optin' (flag needed) or 'strong-always'."""
    if (version.major, version.minor) >= STRONG_ONLY_FROM:
        return "strong-always"
    if (version.major, version.minor) >= STRONG_TYPING_FROM:
        return "strong-optin"
    return "weak"


def network_flag_names(version: TrtVersion) -> tuple[str, ...]:
    """Names in trt.NetworkDefinitionCreationFlag to OR into create_network()."""
    return ("STRONGLY_TYPED",) if typing_mode(version) == "strong-optin" else ()


def builder_flag_names(version: TrtVersion, precision: str) -> tuple[str, ...]:
    """Names in trt.BuilderFlag to set: only weakly typed builds have precision flags.

    INT8 Q/DQ graphs carry their own scales, so no calibrator is ever set. INT8 sets FP16 too:
    with INT8 alone, the layers a mixed graph keeps float (no Q/DQ around them) build in FP32.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise GencompressError(f"unknown precision {precision!r}")
    if typing_mode(version) != "weak" or precision == "fp32":
        return ()
    return ("INT8", "FP16") if precision == "int8" else ("FP16",)


def float_layer_precision(version: TrtVersion, precision: str, graph_float: str = "fp32") -> str:
    """The precision the layers left float build in: FP16 where weak typing's FP16 flag is set;
    strongly typed builds keep the graph's own, `graph_float` (gencompress.onnx_utils.float_compute:
    fp16 where the build converted the layers its Q/DQ graph keeps float)."""
    if precision == "fp16" or "FP16" in builder_flag_names(version, precision):
        return "fp16"
    return graph_float


def trtexec_precision_args(version: TrtVersion, precision: str) -> list[str]:
    mode = typing_mode(version)
    if mode == "strong-optin":
        return ["--stronglyTyped"]
    if mode == "strong-always":
        return []  # --stronglyTyped is the default (and a no-op) in 11.x
    return [f"--{flag.lower()}" for flag in builder_flag_names(version, precision)]


def shape_args(input_name: str, per_sample, profile: BatchProfile) -> list[str]:
    lo, opt, hi = (f"{input_name}:{shape_text(s)}" for s in profile.shapes(per_sample))
    return [f"--minShapes={lo}", f"--optShapes={opt}", f"--maxShapes={hi}"]


def trtexec_build_args(
    version: TrtVersion,
    precision: str,
    onnx: str,
    engine: str,
    input_name: str,
    per_sample,
    profile: BatchProfile,
    workspace_mib: int = 1024,
    timing_cache: str | None = "timing.cache",
) -> list[str]:
    """The argument list (after `trtexec`) that builds `engine` from `onnx`."""
    args = [f"--onnx={onnx}", f"--saveEngine={engine}", *shape_args(input_name, per_sample, profile)]
    args += trtexec_precision_args(version, precision)
    # --workspace was replaced by --memPoolSize in 10.0 (size in MiB by default).
    args.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    args.append("--skipInference")
    return args


def trtexec_bench_args(engine: str, input_name: str, per_sample, batch: int, warmup_ms: int = 500, duration_s: int = 5,
                       cuda_graph: bool = True) -> list[str]:
    """Time `engine` at one batch size; device-side GPU compute time is what we report."""
    args = [f"--loadEngine={engine}", f"--shapes={input_name}:{shape_text((batch, *per_sample))}",
            f"--warmUp={int(warmup_ms)}", f"--duration={int(duration_s)}", "--noDataTransfers"]
    if cuda_graph:
        args.append("--useCudaGraph")
    return args
