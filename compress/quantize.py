"""INT8 post-training quantisation with NVIDIA Model Optimizer (nvidia-modelopt).

The result is a PyTorch model with fake-quant TensorQuantizers whose ONNX export is
TensorRT's explicit-quantisation form: symmetric INT8, zero-point 0, per-tensor
activation scales, per-channel weight scales.

Two traps this module handles on purpose:
- modelopt quantises ConvTranspose weights per channel along axis 0 (the *input*
  channels of a deconvolution's weight) by default. Which axis TensorRT wants for
  deconvolution has changed across versions, so the axis is a recorded choice
  (`deconv_weight_axis`, default 1: the output channels, as pytorch-quantization did).
- modelopt's default config disables quantisers by module name (`*output_layer*`,
  `*proj_out.*`, `*lm_head*`, ...). We keep its rules but report each layer's real
  precision afterwards, read off the quantisers themselves.

Calibrators: `max` is modelopt's max calibration; `mse` is modelopt's MSE algorithm
(per-channel weight amax searched for least squared error, activations by max); `entropy`
and `percentile` give activation quantisers modelopt's histogram calibrator and pick amax
from the histogram (KL divergence, a percentile), weights keep per-channel max.
(modelopt's histogram `mse` method collapsed the trained DCGAN to 10 dB: not used.)
`auto` (the default) calibrates with each of the four and keeps the one whose model is
closest to FP32 on held-out latents (another seed than the calibration draw): which one wins
depends on the model (max on the trained DCGAN, percentile where a few outliers stretch a
range). Then the quality floor (gencompress/floor.py; default PSNR >= 35 dB and SSIM >= 0.97)
decides how many of the most sensitive layers stay float; if none does, nothing is returned.
Mixed precision and QAT live in `compress.sensitivity`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from gencompress import defaults
from gencompress.batching import forward_batched
from gencompress.bundle import Bundle
from gencompress.data import draw_inputs
from gencompress.errors import GencompressError
from gencompress.inputs import UserData
from gencompress.floor import QualityFloor, best_of, quality_floor
from gencompress.progress import bar
from gencompress.loading import build_architecture, load_weights, was_pruned

from .calibration import SOURCES as CALIB_SOURCES, calibration_inputs
from .prune import execution_order

CALIBRATORS = defaults.CALIBRATORS
CALIBRATOR_CHOICES = defaults.CALIBRATOR_CHOICES  # auto: the best of CALIBRATORS on held-out latents
HISTOGRAM_METHODS = ("entropy", "percentile")
# modelopt's entropy search tries every bin from 128 of 2048 (more once a wider batch widens the
# histogram) as amax, each a pure-Python pass over the bins below it: 5-10 s a quantiser, minutes
# for a 40-layer decoder. 128 evenly spaced candidates keep amax within 1/128 of the span searched.
ENTROPY_START_BIN, ENTROPY_CANDIDATES = 128, 128
QUANTIZABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class QuantConfig:
    calibrator: str = "auto"
    calib_samples: int = defaults.CALIB_SAMPLES
    calib_batch: int = 32
    calib_from: str = "auto"  # auto | latents | encoder (see compress/calibration.py)
    deconv_weight_axis: int = 1
    seed: int = 1234
    percentile: float = 99.99  # for calibrator "percentile"
    # Module names (fnmatch patterns) kept in FP32/FP16, e.g. from a sensitivity search.
    keep_float: tuple[str, ...] = ()
    min_psnr: float | None = None  # quality budget vs FP32 (None: the default floor, gencompress/floor.py)
    no_floor: bool = False  # --no-quality-floor: keep every layer INT8, whatever the quality
    eval_samples: int = defaults.EVAL_SAMPLES  # latents for sensitivity and budget checks
    # The float-layer search aims this far above the floor: it judges on held-out inputs, and the
    # build's gate measures other ones, where a mix that just met the floor can land 0.02 dB under.
    search_margin_db: float = 0.0
    # Empirical bias correction after calibration (compress/bias_correction.py), kept only where
    # it scores better on the held-out inputs. Opt-in: it gained 0.05-0.2 dB on the decoders
    # measured (benchmarks/results/bias_correction.json), and it changes the bundle's float
    # biases, which then no longer equal the source model's.
    bias_correction: bool = False
    qat_steps: int = 0  # quantisation-aware fine-tuning steps, distilled from the FP32 model
    qat_lr: float = 1e-5
    qat_batch: int = 32

    def validate(self) -> None:
        if self.calibrator not in CALIBRATOR_CHOICES:
            raise GencompressError(f"unknown calibrator {self.calibrator!r}; known: {', '.join(CALIBRATOR_CHOICES)}")
        if self.calib_samples < 1:
            raise GencompressError("--calib-samples must be at least 1")
        if self.calib_from not in CALIB_SOURCES:
            raise GencompressError(f"--calib-from must be one of {', '.join(CALIB_SOURCES)} (got {self.calib_from!r})")
        if self.deconv_weight_axis not in (0, 1):
            raise GencompressError("--deconv-weight-axis must be 0 or 1")
        if not 0 < self.percentile <= 100:
            raise GencompressError("--percentile must be in (0, 100]")
        self.floor()  # refuses a bad --min-psnr, or one given with --no-quality-floor
        if self.qat_steps < 0 or self.eval_samples < 1:
            raise GencompressError("--qat-steps must be 0 or more and --eval-samples at least 1")

    def floor(self) -> QualityFloor | None:
        return quality_floor(self.min_psnr, self.no_floor)


def _mtq():
    # modelopt prints a warning about `transformers` on import; it is irrelevant here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modelopt.torch.quantization as mtq
    return mtq


def modelopt_config(cfg: QuantConfig, unused: tuple[str, ...] = ()) -> dict:
    """modelopt's INT8 config for `cfg`; the layers in `unused` (unused_layers) get no quantisers."""
    mtq = _mtq()
    config = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    rules = config["quant_cfg"]
    for cls in ("nn.ConvTranspose1d", "nn.ConvTranspose2d", "nn.ConvTranspose3d"):
        rules.append(
            {"quantizer_name": "*weight_quantizer", "parent_class": cls, "cfg": {"num_bits": 8, "axis": cfg.deconv_weight_axis}}
        )
    if cfg.calibrator in HISTOGRAM_METHODS:  # activations: histogram; amax picked after the forward loop
        # Edit modelopt's own input rule rather than append one: an appended `*input_quantizer` rule
        # would come after, and so undo, its rules that keep BatchNorm, LeakyReLU and Embedding float.
        for rule in rules:
            if rule.get("quantizer_name") == "*input_quantizer" and "parent_class" not in rule and "cfg" in rule:
                rule["cfg"] = {**rule["cfg"], "calibrator": "histogram"}
    for pattern in (*cfg.keep_float, *unused):
        rules.append({"quantizer_name": f"{pattern}.*", "enable": False})
    config["algorithm"] = None if cfg.calibrator in HISTOGRAM_METHODS else cfg.calibrator
    return config


def _histogram_calibrate(model: nn.Module, forward_loop, cfg: QuantConfig) -> None:
    """pytorch-quantization's recipe on modelopt's quantisers: collect, then pick amax."""
    from modelopt.torch.quantization.calib import HistogramCalibrator
    from modelopt.torch.quantization.model_calib import enable_stats_collection
    from modelopt.torch.quantization.nn import TensorQuantizer

    enable_stats_collection(model)
    forward_loop(model)
    for module in model.modules():
        if not isinstance(module, TensorQuantizer) or module._disabled or module._calibrator is None:
            continue
        if not isinstance(module._calibrator, HistogramCalibrator):
            module.load_calib_amax()
        module.enable_quant()
        module.disable_calib()
    load_histogram_amax(model, cfg)


def load_histogram_amax(model: nn.Module, cfg: QuantConfig) -> None:
    """Set every histogram-calibrated quantiser's amax by `cfg.calibrator`'s method. The
    histograms stay, so a copy of an `entropy` model becomes a `percentile` one with no new pass."""
    from modelopt.torch.quantization.calib import HistogramCalibrator
    from modelopt.torch.quantization.nn import TensorQuantizer

    for module in model.modules():
        # Disabled quantisers saw nothing: e.g. an nn.Embedding's input (integer indices) matches the
        # `*input_quantizer` rule but is hard-disabled by modelopt, and has no histogram to read.
        if getattr(module, "_disabled", False):
            continue
        if not (isinstance(module, TensorQuantizer) and isinstance(getattr(module, "_calibrator", None), HistogramCalibrator)):
            continue
        if cfg.calibrator == "percentile":
            module.load_calib_amax("percentile", percentile=cfg.percentile)
        else:  # entropy: every candidate amax is a Python loop over the bins below it
            bins = len(module._calibrator._calib_hist)
            module.load_calib_amax("entropy", stride=max(1, (bins - ENTROPY_START_BIN) // ENTROPY_CANDIDATES),
                                   start_bin=ENTROPY_START_BIN)


# On a quantised model: the names of its layers that its forward never runs (unused_layers), so
# that they are not listed as layers kept float.
UNUSED_LAYERS = "_gencompress_unused_layers"


def unused_layers(model: nn.Module, sample: torch.Tensor) -> tuple[str, ...]:
    """The Conv/Linear layers that `model(sample)` never runs, e.g. the encoder of a VAE whose
    wrapper calls only its decoder: their quantisers would see no data, and modelopt refuses to
    calibrate such a model ("Calibrator returned None")."""
    ran = set(execution_order(model, sample))
    return tuple(name for name, m in model.named_modules() if isinstance(m, QUANTIZABLE) and name not in ran)


def _quiet():
    """modelopt prints per-quantizer chatter to stdout; keep stdout for results."""
    return contextlib.redirect_stdout(io.StringIO())


def quantize_module(model: nn.Module, input_shape, distribution: str, cfg: QuantConfig, progress: bool = True,
                    inputs: torch.Tensor | None = None) -> nn.Module:
    """Fake-quantise a copy of `model`, calibrated on `inputs` (default: drawn like its own).

    `cfg.calibrator` must name one calibrator: `auto` is a choice among several models, made by
    `choose_calibrator`, not something one calibration can do."""
    cfg.validate()
    if cfg.calibrator not in CALIBRATORS:
        raise GencompressError(f"quantize_module calibrates with one of {', '.join(CALIBRATORS)}, not {cfg.calibrator!r} "
                               "(quantize() chooses among them)")
    if not any(isinstance(m, QUANTIZABLE) for m in model.modules()):  # modelopt would fail with its own multi-line error
        raise GencompressError("the model has no Conv2d/ConvTranspose2d/Linear module for modelopt to quantise (its layers convolve "
                               "functionally with their own parameters, as NVlabs' StyleGAN2 layers do): build --target cpu quantises "
                               "the ONNX graph instead, or build --precision fp16")
    mtq = _mtq()
    qmodel = copy.deepcopy(model).eval()
    latents = inputs if inputs is not None else draw_inputs(tuple(input_shape), cfg.calib_samples, distribution, cfg.seed)
    batches = list(latents.split(cfg.calib_batch))

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for chunk in bar(batches, "calibrate", progress, leave=False):
                m(chunk)

    unused = unused_layers(qmodel, batches[0][:1])
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmodel = mtq.quantize(qmodel, modelopt_config(cfg, unused), forward_loop)
        if cfg.calibrator in HISTOGRAM_METHODS:
            _histogram_calibrate(qmodel, forward_loop, cfg)
    setattr(qmodel, UNUSED_LAYERS, unused)
    return qmodel.eval()


def layer_precisions(qmodel: nn.Module) -> dict[str, str]:
    """Each Conv/ConvTranspose/Linear layer's precision, read off its quantisers."""
    result = {}
    unused = set(getattr(qmodel, UNUSED_LAYERS, ()))
    for name, module in qmodel.named_modules():
        if not isinstance(module, QUANTIZABLE) or name in unused:
            continue
        wq = getattr(module, "weight_quantizer", None)
        iq = getattr(module, "input_quantizer", None)
        on = [q is not None and getattr(q, "is_enabled", False) for q in (wq, iq)]
        result[name] = "int8" if all(on) else ("int8-weight-only" if on[0] else "fp32")
    return result


def held_out(bundle: Bundle, cfg: QuantConfig, data: UserData | None = None) -> torch.Tensor:
    """What calibrator and mix choices are judged on: the user's evaluation inputs (disjoint from
    the calibration ones), else a draw with another seed than the calibration draw."""
    if data is not None:
        return data.evaluation[: cfg.eval_samples]
    return draw_inputs(tuple(bundle.input_shape), cfg.eval_samples, bundle.manifest["input"], cfg.seed + 1)


def quantize(bundle: Bundle, cfg: QuantConfig, progress: bool = True, data: UserData | None = None) -> Bundle:
    """Stage function: a bundle with a PyTorch model -> the same, INT8 fake-quantised.

    The calibrator (`auto`: the best on held-out latents), then under the quality floor the
    fewest most sensitive layers in float; with `qat_steps`, the quantised model is then
    fine-tuned against the FP32 model. Raises (nothing returned) when no mix meets the floor.
    """
    from .sensitivity import choose_mix, qat

    cfg.validate()
    if bundle.model is None:
        raise GencompressError("quantize needs a PyTorch model; for an ONNX model use export's ONNX quantisation")
    floor = cfg.floor()
    inputs, calibration_data = calibration_inputs(bundle, cfg.calib_samples, cfg.seed, cfg.calib_from, data)
    held = held_out(bundle, cfg, data)  # unseen inputs judge the choices
    reference = forward_batched(bundle.model.eval(), held, cfg.calib_batch)
    qmodel, calibrators = choose_calibrator(bundle, cfg, inputs, held, reference, floor or QualityFloor(1.0), progress)
    cfg = replace(cfg, calibrator=calibrators["chosen"])
    if cfg.bias_correction:
        qmodel, calibrators["bias_correction"] = bias_corrected(qmodel, bundle.model, inputs, held, reference,
                                                                calibrators["scores"][cfg.calibrator], floor or QualityFloor(1.0), cfg)
    search = None
    if floor is not None:
        search = choose_mix(qmodel, held, reference, floor, progress, cfg.calib_batch, cfg.search_margin_db)
        search["search_margin_db"] = cfg.search_margin_db
        cfg = replace(cfg, keep_float=tuple(dict.fromkeys((*cfg.keep_float, *search["keep_float"]))))
    qat_log = (qat(qmodel, bundle.model, bundle.input_shape, bundle.manifest["input"], cfg, held, reference, progress,
                   pool=data.rest if data is not None else None) if cfg.qat_steps else None)
    step = {"step": "quantize", "tool": "nvidia-modelopt", "format": "qdq-symmetric-int8", **asdict(cfg)}
    step["keep_float"] = list(cfg.keep_float)
    step["calibration_data"] = calibration_data
    step["calibrators"] = calibrators
    step["floor"] = floor.as_dict() if floor else None
    if data is not None:
        step["data"] = data.record
    if search:
        step["sensitivity"] = search
    if qat_log:
        step["qat"] = qat_log
    out = bundle.derive(step, qmodel)
    out.manifest["precision"] = layer_precisions(qmodel)
    return out


def bias_corrected(qmodel: nn.Module, fp32: nn.Module, inputs: torch.Tensor, held: torch.Tensor, reference: torch.Tensor,
                   plain: dict, floor: QualityFloor, cfg: QuantConfig) -> tuple[nn.Module, dict]:
    """`qmodel` with its biases corrected (compress/bias_correction.py) where that scores a better
    PSNR on the held-out inputs than `plain` (the calibrated model's scores), else `qmodel` as it is."""
    from .bias_correction import correct_biases

    candidate = copy.deepcopy(qmodel)
    record = correct_biases(candidate, fp32, inputs, cfg.calib_batch)
    scores = floor.measure(reference, forward_batched(candidate, held, cfg.calib_batch))
    kept = scores["psnr_db"] > plain["psnr_db"]
    record.update(psnr_before_db=plain["psnr_db"], psnr_after_db=scores["psnr_db"], ssim_after=scores["ssim"], kept=kept)
    return (candidate if kept else qmodel), record


def choose_calibrator(bundle: Bundle, cfg: QuantConfig, inputs: torch.Tensor, held: torch.Tensor, reference: torch.Tensor,
                      floor: QualityFloor, progress: bool) -> tuple[nn.Module, dict]:
    """Calibrate with each candidate (all four for `auto`) and keep the model closest to FP32
    on the held-out latents. Returns it and {"chosen", "scores": {calibrator: PSNR, SSIM}}."""
    names = CALIBRATORS if cfg.calibrator == "auto" else (cfg.calibrator,)
    models, scores = {}, {}
    for name in names:
        shared = next((models[m] for m in HISTOGRAM_METHODS if m in models), None)  # histograms already collected
        if name in HISTOGRAM_METHODS and shared is not None:
            qmodel = copy.deepcopy(shared)
            load_histogram_amax(qmodel, replace(cfg, calibrator=name))
        else:
            qmodel = quantize_module(bundle.model, bundle.input_shape, bundle.input_distribution, replace(cfg, calibrator=name),
                                     progress, inputs)
        scores[name] = floor.measure(reference, forward_batched(qmodel, held, cfg.calib_batch))
        models[name] = qmodel
    chosen = best_of(scores)
    return models[chosen], {"asked": cfg.calibrator, "chosen": chosen, "scores": scores}


def restore_quantized(bundle: Bundle) -> nn.Module:
    """Rebuild a saved INT8 bundle's fake-quant model from its recipe and amax values.

    We replay `quantize` with no calibration data (weights are calibrated from the
    weights themselves), then set each activation quantiser's saved amax.
    """
    step = bundle.last_step("quantize")
    if step is None or not bundle.form.fake_quant_weights:
        raise GencompressError("bundle holds no modelopt INT8 model (not quantised, or quantised on the ONNX graph)")
    fields = {k: v for k, v in step.items() if k in QuantConfig.__dataclass_fields__}
    fields["keep_float"] = tuple(fields.get("keep_float", ()))
    # Every amax comes from the saved state: replay the quantiser layout, not the calibration.
    cfg = replace(QuantConfig(**fields), calibrator="max", min_psnr=None, no_floor=True, qat_steps=0)
    state = bundle.state_dict()
    model = build_architecture(bundle.manifest["architecture"])
    load_weights(model, {k: v for k, v in state.items() if "_quantizer." not in k}, shrink=was_pruned(bundle.manifest),
                 where=f"bundle {bundle.path}")
    mtq = _mtq()
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mtq.quantize(model.eval(), modelopt_config(cfg), None)
    for key, value in state.items():
        if key.endswith("_quantizer._amax"):
            quantizer = model.get_submodule(key.removesuffix("._amax"))
            quantizer.amax = value.clone()
    return model.eval()
