"""Build a TensorRT engine from ONNX with the TensorRT Python API (10.x and 11.x).

    builder = trt.Builder(logger)
    network = builder.create_network(flags)       # 10.12+: STRONGLY_TYPED; 11: always strong
    parser  = trt.OnnxParser(network, logger)     # parse(bytes); errors via get_error(i)
    config  = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes)
    profile = builder.create_optimization_profile(); profile.set_shape(name, min, opt, max)
    config.set_timing_cache(config.create_timing_cache(bytes), ignore_mismatch=False)
    plan    = builder.build_serialized_network(network, config)

Precision: weakly typed builds (TensorRT < 10.12) set BuilderFlag.INT8 and FP16 for Q/DQ graphs
(FP16 for the layers kept float), with no calibrator (the scales are in the graph); strongly typed
builds set no flag.

Where Polygraphy is installed (feature detection: its TensorRT loaders import), the same build
goes through its loaders (NetworkFromOnnxPath -> CreateConfig -> EngineBytesFromNetwork), which
also parse from file (external weights) and lock the timing cache; otherwise the plain API above.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gencompress.atomic import atomic_write_bytes
from gencompress.cache import cache_dir
from gencompress.errors import GencompressError
from gencompress.onnx_utils import float_compute

from ..profiles import BatchProfile
from . import import_tensorrt
from .versions import TrtVersion, builder_flag_names, network_flag_names, typing_mode


@dataclass
class BuildConfig:
    precision: str | None = None  # None: read off the graph (Q/DQ -> int8, FP16 weights -> fp16)
    batch: BatchProfile = field(default_factory=BatchProfile)
    workspace_mib: int = 1024
    timing_cache: str | None = None  # None: one per TensorRT version and GPU under the cache folder
    verbose: bool = False


def gpu_identity() -> dict:
    """GPU name and compute capability (via torch.cuda: no pycuda needed)."""
    import torch

    if not torch.cuda.is_available():
        raise GencompressError("TensorRT needs an NVIDIA GPU, and torch.cuda sees none here")
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def graph_precision(onnx_path) -> str:
    """int8 when the graph has Q/DQ, fp16 when it holds FP16 weights, else fp32."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    return float_compute(model)


def _parse(trt, network, logger, onnx_path: Path):
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].splitlines()[0] if errors else "unknown error"
        raise GencompressError(f"TensorRT cannot parse {onnx_path}: {first[:300]}")
    return parser


def _add_profile(builder, config, inputs: list[tuple[str, tuple[int, ...]]], batch: BatchProfile) -> None:
    profile = builder.create_optimization_profile()
    for name, per_sample in inputs:
        profile.set_shape(name, *batch.shapes(per_sample))
    config.add_optimization_profile(profile)


def _timing_cache_path(cfg: BuildConfig, version: str, gpu: str) -> Path:
    if cfg.timing_cache:
        return Path(cfg.timing_cache)
    slug = "".join(c if c.isalnum() else "-" for c in gpu).strip("-").lower()
    return cache_dir() / "tensorrt" / f"timing-{version}-{slug}.cache"


def polygraphy_trt():
    """Polygraphy's TensorRT loaders where Polygraphy is installed, else None (feature detection,
    not a version table: the loaders this module calls must be there)."""
    try:
        from polygraphy.backend import trt as pg
    except ImportError:
        return None
    return pg if all(hasattr(pg, n) for n in ("NetworkFromOnnxPath", "CreateConfig", "EngineBytesFromNetwork", "Profile")) else None


def onnx_inputs(onnx_path) -> list[tuple[str, tuple[int, ...]]]:
    """(name, per-sample shape) of each graph input, for the optimisation profile; refused, as
    the export stage refuses it, where an axis other than batch is dynamic."""
    import onnx

    from ..checks import check_static_except_batch, io_spec

    model = onnx.load(str(onnx_path), load_external_data=False)
    check_static_except_batch(model, Path(onnx_path).name)
    return [(tensor["name"], tuple(tensor["shape"][1:])) for tensor in io_spec(model)["inputs"]]


def polygraphy_loaders(pg, onnx_path: Path, cfg: BuildConfig, version: TrtVersion, precision: str, cache_path: Path, workspace_pool):
    """The engine-bytes loader: Polygraphy's NetworkFromOnnxPath -> CreateConfig ->
    EngineBytesFromNetwork with this module's flags, profile, workspace and timing cache.
    `workspace_pool`: trt.MemoryPoolType.WORKSPACE (a parameter so the shape is checkable
    without TensorRT). Nothing is built until the returned loader is called."""
    network = pg.NetworkFromOnnxPath(str(onnx_path), strongly_typed=typing_mode(version) == "strong-optin" or None)
    profile = pg.Profile()
    for name, per_sample in onnx_inputs(onnx_path):
        profile.add(name, *cfg.batch.shapes(per_sample))
    precision_flags = {name.lower(): True for name in builder_flag_names(version, precision)}  # INT8 -> int8=True
    config = pg.CreateConfig(profiles=[profile], memory_pool_limits={workspace_pool: int(cfg.workspace_mib) << 20},
                             load_timing_cache=str(cache_path) if cache_path.is_file() else None, **precision_flags)
    return pg.EngineBytesFromNetwork(network, config=config, save_timing_cache=str(cache_path))


def _plan_with_polygraphy(pg, trt, onnx_path: Path, cfg: BuildConfig, version: TrtVersion, precision: str, cache_path: Path) -> bytes:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    # Polygraphy's logger prints to stdout, which `build --json` keeps for its JSON: its lines go to stderr
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return bytes(polygraphy_loaders(pg, onnx_path, cfg, version, precision, cache_path, trt.MemoryPoolType.WORKSPACE)())
    except GencompressError:
        raise
    except Exception as exc:  # Polygraphy reports parser and builder failures as PolygraphyException
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise GencompressError(f"TensorRT {trt.__version__} (through Polygraphy) failed to build an engine from {onnx_path}: {first[:300]}") from exc


def _plan_with_tensorrt(trt, onnx_path: Path, cfg: BuildConfig, version: TrtVersion, precision: str, cache_path: Path) -> bytes:
    logger = trt.Logger(trt.Logger.VERBOSE if cfg.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flag_names(version):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = _parse(trt, network, logger, onnx_path)  # keep alive while the network lives
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_mib) << 20)
    for name in builder_flag_names(version, precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    _add_profile(builder, config, onnx_inputs(onnx_path), cfg.batch)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    del parser
    if plan is None:
        raise GencompressError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see the log above)")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def build_engine_file(onnx_path, plan_path, cfg: BuildConfig | None = None) -> dict:
    """Build and serialise an engine (through Polygraphy where it is installed); return what
    the manifest records about it."""
    cfg = cfg or BuildConfig()
    trt = import_tensorrt()
    precision = cfg.precision or graph_precision(onnx_path)
    version = TrtVersion.parse(trt.__version__)
    ident = gpu_identity()
    cache_path = _timing_cache_path(cfg, str(version), ident["gpu"])
    pg = polygraphy_trt()
    if pg is not None:
        data = _plan_with_polygraphy(pg, trt, Path(onnx_path), cfg, version, precision, cache_path)
    else:
        data = _plan_with_tensorrt(trt, Path(onnx_path), cfg, version, precision, cache_path)
    atomic_write_bytes(plan_path, data)
    return {
        "tensorrt_version": trt.__version__, **ident, "precision": precision, "typing": typing_mode(version),
        "builder": "polygraphy" if pg is not None else "tensorrt",
        "batch": cfg.batch.as_dict(), "workspace_mib": cfg.workspace_mib, "timing_cache": str(cache_path),
        "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
    }
