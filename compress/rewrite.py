"""Exact rewrites of upsampling layers into plain convolutions.

ONNX Runtime's CPU provider has no INT8 ConvTranspose, and TensorRT has taken per-channel
deconvolution weight scales on different axes across versions. A plain Conv is INT8 on
every backend, so a generator is rewritten before integer quantisation:

- ConvTranspose stride 2, kernel 4, padding 1 (the DCGAN upsampler): output pixel
  (2m+a, 2n+b) depends on a 2x2 window of the input, with a different 2x2 slice of the
  kernel for each phase (a, b). Three forms: four-phase (four 2x2 convolutions, exactly
  the deconvolution's MACs), one-pass (one 2x2 convolution, cropped per phase) and
  sub-pixel (one 3x3 convolution to 4*Cout channels: 2.25x the MACs, fewest operators,
  and the fastest on ONNX Runtime's CPU provider at these sizes).
- Any other stride-2 ConvTranspose whose output is exactly twice its input (CycleGAN's
  kernel 3, padding 1, output_padding 1): the sub-pixel form, taps from `subpixel_taps`.
- ConvTranspose kernel K, stride 1, padding 0 on a 1x1 input (the DCGAN stem): a 1x1
  convolution to Cout*K*K channels reshaped to K x K: a matrix product.
- nearest 2x Upsample + 3x3 Conv (the upsample+conv generator): one 3x3 convolution on
  the low-resolution map to 4*Cout channels, the same MACs, no Resize.

The sub-pixel forms end in a channels-last depth-to-space (PhaseMajorShuffle), which
ONNX Runtime fuses with its NHWC integer convolutions. All are exact up to float summation
order (checked on every rewrite: max abs error < 1e-5).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from gencompress.errors import GencompressError

# Kernel taps per output phase, along one axis: phase 0 reads input rows (m-1, m) with
# kernel taps (3, 1); phase 1 reads rows (m, m+1) with taps (2, 0).
_PHASE_TAPS = ((3, 1), (2, 0))


class FourPhaseDeconv(nn.Module):
    """ConvTranspose2d(k=4, s=2, p=1) as four 2x2 convolutions + PixelShuffle(2)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        w = deconv.weight.detach()  # (Cin, Cout, 4, 4)
        self.phases = nn.ModuleList()
        for a in range(2):
            for b in range(2):
                conv = nn.Conv2d(deconv.in_channels, deconv.out_channels, 2, bias=deconv.bias is not None)
                rows, cols = _PHASE_TAPS[a], _PHASE_TAPS[b]
                kernel = w[:, :, list(rows)][:, :, :, list(cols)]  # (Cin, Cout, 2, 2)
                conv.weight.data.copy_(kernel.transpose(0, 1))
                if deconv.bias is not None:
                    conv.bias.data.copy_(deconv.bias.detach())
                self.phases.append(conv)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1))
        outs = [self.phases[2 * a + b](padded[:, :, a : a + h + 1, b : b + w + 1]) for a in range(2) for b in range(2)]
        # PixelShuffle reads channel c*4 + (2a + b) into pixel (2m + a, 2n + b).
        stacked = torch.stack(outs, dim=2)  # N, Cout, 4, H, W
        return self.shuffle(stacked.flatten(1, 2))


class OnePassDeconv(nn.Module):
    """The same four phases computed by one 2x2 convolution (padding 1, 4*Cout outputs)
    whose (H+1)x(W+1) result each phase crops at its own offset.

    It costs (H+1)(W+1)/(HW) of the exact MACs (1.56x at 4x4 inputs, 1.13x at 16x16) but
    runs one integer convolution instead of four; on small generators the fewer kernel
    launches and Q/DQ pairs win on ONNX Runtime's CPU provider (benchmarks/deconv_rewrite.py).
    """

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        four = FourPhaseDeconv(deconv)
        cout = deconv.out_channels
        self.conv = nn.Conv2d(deconv.in_channels, 4 * cout, 2, padding=1, bias=deconv.bias is not None)
        # channel p*Cout + c holds phase p of output channel c
        self.conv.weight.data.copy_(torch.cat([c.weight.detach() for c in four.phases]))
        if deconv.bias is not None:
            self.conv.bias.data.copy_(torch.cat([c.bias.detach() for c in four.phases]))
        self.cout = cout
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        full = self.conv(x)
        c = self.cout
        outs = [full[:, (2 * a + b) * c : (2 * a + b + 1) * c, a : a + h, b : b + w] for a in range(2) for b in range(2)]
        return self.shuffle(torch.stack(outs, dim=2).flatten(1, 2))


class PhaseMajorShuffle(nn.Module):
    """Depth-to-space by 2 for a conv whose 4*C output channels are phase-major (channel
    p*C + c is phase p = 2a + b of channel c), written through channels-last views.

    Why not PixelShuffle: ONNX Runtime runs integer convolutions in NHWC, so an NCHW
    DepthToSpace between two of them costs a Transpose on each side plus a byte-by-byte
    shuffle (about 40% of the INT8 time of the DCGAN). Here the Transposes next to the
    convolutions cancel against ONNX Runtime's own, and the shuffle moves runs of 2*C bytes.
    The spatial size is fixed at rewrite time (generators have one input size).
    """

    def __init__(self, channels: int, input_hw: tuple[int, int]):
        super().__init__()
        self.channels, self.hw = channels, tuple(input_hw)
        # A constant -1 batch keeps the graph free of Shape ops (so ONNX Runtime cancels the
        # Transposes), but the ONNX exporter then loses the channel count, which a following
        # affine-free InstanceNorm needs: there the batch is read from the input's shape.
        self.batch_from_shape = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), c = self.hw, self.channels
        n = x.shape[0] if self.batch_from_shape else -1
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c)  # N, H, W, a, b, C
        return y.permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


# Below this many output channels the channels-last shuffle moves runs of under 16 bytes,
# which ONNX Runtime's Transpose copies one run at a time (0.12 ms for the DCGAN's
# 1-channel output layer at batch 8); its NCHW DepthToSpace is faster there.
MIN_CHANNELS_LAST = 8


class SubPixelConv(nn.Module):
    """One 3x3 convolution (padding 1) to 4*Cout channels, an optional elementwise
    activation, then the depth-to-space by 2: the form both rewrites below produce.
    `weight` is (4, Cout, Cin, 3, 3), phase p = 2a + b first."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, input_hw: tuple[int, int]):
        super().__init__()
        phases, cout, cin = weight.shape[:3]
        self.conv = nn.Conv2d(cin, phases * cout, 3, padding=1, bias=bias is not None)
        self.act: nn.Module = nn.Identity()  # an elementwise activation moved before the shuffle
        bias = None if bias is None else bias.detach()
        if cout >= MIN_CHANNELS_LAST:  # channel p*Cout + c
            self.shuffle: nn.Module = PhaseMajorShuffle(cout, input_hw)
            bias = None if bias is None else bias.repeat(phases)
        else:  # channel c*4 + p, as PixelShuffle reads it
            self.shuffle = nn.PixelShuffle(2)
            weight = weight.transpose(0, 1)
            bias = None if bias is None else bias.repeat_interleave(phases)
        self.conv.weight.data.copy_(weight.reshape(phases * cout, cin, 3, 3))
        if bias is not None:
            self.conv.bias.data.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.conv(x)))


def subpixel_taps(kernel: int, padding: int) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    """For a stride-2 deconvolution along one axis: per output phase a (row 2m + a), the
    (tap t of a 3x3 'same' conv on the input, deconvolution kernel index k) pairs.

    Output row 2m + a gets input row i through kernel index k = 2m + a + padding - 2i;
    with i = m + t - 1 that is k = a + padding - 2(t - 1). None when some kernel index
    needs an input row outside m-1..m+1 (then one 3x3 conv cannot hold it)."""
    phases = tuple(tuple((t, a + padding - 2 * (t - 1)) for t in range(3) if 0 <= a + padding - 2 * (t - 1) < kernel) for a in range(2))
    used = sum(len(p) for p in phases)
    return phases if used == kernel else None


class SubPixelDeconv(SubPixelConv):
    """A stride-2 ConvTranspose2d whose output is exactly twice its input (kernel 4,
    padding 1 as in DCGAN; kernel 3, padding 1, output_padding 1 as in CycleGAN) in the
    sub-pixel form. With kernel 4 each phase uses 4 of the 9 taps (2.25x the MACs), but it
    is one convolution: on small generators the per-operator cost of ONNX Runtime's CPU
    provider outweighs the extra integer MACs.
    """

    def __init__(self, deconv: nn.ConvTranspose2d, input_hw: tuple[int, int]):
        rows, cols = (subpixel_taps(k, p) for k, p in zip(deconv.kernel_size, deconv.padding))
        w = deconv.weight.detach().transpose(0, 1)  # (Cout, Cin, kh, kw)
        weight = torch.zeros(4, *w.shape[:2], 3, 3)
        for a in range(2):
            for b in range(2):
                for t, kh in rows[a]:
                    for s, kw in cols[b]:
                        weight[2 * a + b, :, :, t, s] = w[:, :, kh, kw]
        super().__init__(weight, deconv.bias, input_hw)


def _doubles_exactly(m: nn.ConvTranspose2d) -> bool:
    """Stride 2 with output size exactly 2x the input, and taps one 3x3 conv can hold."""
    return m.stride == (2, 2) and all(
        k + op == 2 * p + 2 and subpixel_taps(k, p) is not None for k, p, op in zip(m.kernel_size, m.padding, m.output_padding)
    )


# Nearest 2x upsampling then a 3x3 tap t (0..2) of phase a reads low-resolution offset
# index _NEAREST_TAP[a][t] (0: row m-1, 1: row m, 2: row m+1).
_NEAREST_TAP = ((0, 1, 1), (1, 1, 2))


class UpsampleConvAsSubPixel(SubPixelConv):
    """Upsample(x2, nearest) + Conv2d(3x3, padding 1) as one 3x3 convolution on the
    low-resolution input to 4*Cout channels + depth-to-space: exact (the zero padding of
    the upsampled map is the zero padding of the input), the same MACs, and no Resize,
    which ONNX Runtime runs slowly on uint8 (0.4 ms of 1.1 ms in the upsample+conv
    generator)."""

    def __init__(self, conv: nn.Conv2d, input_hw: tuple[int, int]):
        w = conv.weight.detach()  # (Cout, Cin, 3, 3)
        weight = torch.zeros(4, *w.shape)
        for a in range(2):
            for b in range(2):
                for t in range(3):
                    for s in range(3):
                        weight[2 * a + b, :, :, _NEAREST_TAP[a][t], _NEAREST_TAP[b][s]] += w[:, :, t, s]
        super().__init__(weight, conv.bias, input_hw)


class StemAsConv(nn.Module):
    """ConvTranspose2d(k=K, s=1, p=0) on a 1x1 input as a 1x1 conv + reshape to K x K.

    The conv's outputs are ordered (row, column, channel), so the reshape yields a
    channels-last map and one Transpose makes it NCHW; ONNX Runtime cancels that Transpose
    against the one it puts before the next (NHWC) integer convolution.
    """

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        cin, cout, kh, kw = deconv.weight.shape
        self.shape = (kh, kw, cout)
        self.conv = nn.Conv2d(cin, cout * kh * kw, 1, bias=deconv.bias is not None)
        weight = deconv.weight.detach().permute(2, 3, 1, 0)  # (kh, kw, Cout, Cin)
        self.conv.weight.data.copy_(weight.reshape(-1, cin, 1, 1))
        if deconv.bias is not None:
            self.conv.bias.data.copy_(deconv.bias.detach().repeat(kh * kw))
        self.act: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)).reshape(-1, *self.shape).permute(0, 3, 1, 2)


def _plain(m: nn.ConvTranspose2d) -> bool:
    return m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"


DECONV_FORMS = {"four-phase": FourPhaseDeconv, "one-pass": OnePassDeconv, "sub-pixel": SubPixelDeconv}


def rewrite_for(m: nn.ConvTranspose2d, input_hw: tuple[int, int], form: str = "four-phase") -> nn.Module | None:
    """The exact conv form of one deconvolution, or None where no rewrite applies."""
    if not _plain(m):
        return None
    if m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1) and m.output_padding == (0, 0):
        return SubPixelDeconv(m, input_hw) if form == "sub-pixel" else DECONV_FORMS[form](m)
    if _doubles_exactly(m):  # other kernels: the sub-pixel form is the one exact conv form here
        return SubPixelDeconv(m, input_hw)
    if m.stride == (1, 1) and m.padding == (0, 0) and m.output_padding == (0, 0) and tuple(input_hw) == (1, 1):
        return StemAsConv(m)
    return None


def _input_sizes(model: nn.Module, input_shape, kind: type = nn.ConvTranspose2d) -> dict[str, tuple[int, int]]:
    """The input height and width of every `kind` module, from one forward pass."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, n=n: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for n, m in model.named_modules()
        if isinstance(m, kind)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def rewrite_deconvs(model: nn.Module, input_shape, tolerance: float = 1e-5, form: str = "four-phase",
                    verify: bool = True) -> tuple[nn.Module, list[str]]:
    """A copy of `model` with every rewritable ConvTranspose2d replaced, verified exact
    (unless `verify` is False: the caller verifies the whole rewrite once).

    Returns the model and the names of the layers rewritten. Deconvolutions of other
    shapes stay as they are (they then run in FP32 on ONNX Runtime's CPU provider).
    """
    if form not in DECONV_FORMS:
        raise GencompressError(f"unknown deconvolution rewrite {form!r}; known: {', '.join(DECONV_FORMS)}")
    rewritten = copy.deepcopy(model).eval()
    sizes = _input_sizes(rewritten, input_shape)
    done = []
    for name, hw in sizes.items():
        replacement = rewrite_for(rewritten.get_submodule(name), hw, form)
        if replacement is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(rewritten.get_submodule(parent_name) if parent_name else rewritten, attr, replacement)
        done.append(name)
    if verify and done:
        _verify(model, rewritten, input_shape, tolerance)
    return rewritten, done


def _nearest_x2(m: nn.Module) -> bool:
    return isinstance(m, nn.Upsample) and m.mode == "nearest" and m.size is None and m.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))


def _same_3x3(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
            and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros")


def rewrite_upsample_convs(model: nn.Module, input_shape) -> list[str]:
    """Replace, in place, each nearest 2x Upsample followed (inside an nn.Sequential, past
    Identity placeholders) by a 3x3 'same' Conv2d with UpsampleConvAsSubPixel. Returns
    the names of the convolutions rewritten; the caller verifies the model."""
    sizes = _input_sizes(model, input_shape, nn.Upsample)
    done = []
    for seq_name, seq in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential)]:
        for i, up in enumerate(seq):
            j = i + 1
            while j < len(seq) and isinstance(seq[j], nn.Identity):
                j += 1
            up_name = f"{seq_name}.{i}" if seq_name else str(i)
            if j < len(seq) and _nearest_x2(up) and _same_3x3(seq[j]) and up_name in sizes:
                seq[i], seq[j] = nn.Identity(), UpsampleConvAsSubPixel(seq[j], sizes[up_name])
                done.append(f"{seq_name}.{j}" if seq_name else str(j))
    return done


def _verify(original: nn.Module, rewritten: nn.Module, input_shape, tolerance: float) -> None:
    """Compared in float64 (a model with wide activations differs by more than 1e-5 in float32
    from summation order alone), to `tolerance` relative to the output's peak (at least 1)."""
    # Two samples: the rewrite is linear algebra that either holds at every output value or
    # not; a float64 pass of a 256-px decoder costs seconds and gigabytes per sample.
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        ref = copy.deepcopy(original).double().eval()(x)
        err = (ref - copy.deepcopy(rewritten).double()(x)).abs().max().item()
        scale = max(1.0, ref.abs().max().item())
    if not err < tolerance * scale:
        raise GencompressError(f"the CPU integer rewrite (BatchNorm folding, deconvolution and upsampling rewrites) is not exact: max abs error {err:.2e} >= {tolerance:.0e} x output peak {scale:.2g}")


def _fold_into(layer: nn.Module, bn: nn.BatchNorm2d) -> None:
    """BatchNorm (eval) after a conv/deconv folded into its weights and bias: PyTorch's own
    fuse_conv_bn_weights (transpose=True for a deconvolution, whose weight is (Cin, Cout/g, k, k))."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    with torch.no_grad():
        layer.weight, layer.bias = fuse_conv_bn_weights(
            layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.eps,
            bn.weight if bn.affine else None, bn.bias if bn.affine else None, transpose=isinstance(layer, nn.ConvTranspose2d))


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d/ConvTranspose2d
    inside an nn.Sequential (in place); returns how many were folded.

    The ONNX exporter folds Conv+BN itself, but a BN after a rewritten deconvolution sits
    behind PixelShuffle, where it would stay a float op between integer convs.
    """
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, bn = seq[i], seq[i + 1]
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer.groups == 1 and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                _fold_into(layer, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def absorb_activations(model: nn.Module) -> int:
    """Move a ReLU/LeakyReLU that follows a rewritten layer (in an nn.Sequential) inside
    it, before the reshape/depth-to-space: exact, because both are elementwise-agnostic
    permutations, and it lets the integer convolution apply the activation itself."""
    moved = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i, layer in enumerate(seq):
            if not isinstance(layer, (SubPixelConv, StemAsConv)):
                continue
            j = i + 1
            while j < len(seq) and isinstance(seq[j], nn.Identity):
                j += 1
            if j < len(seq) and isinstance(seq[j], (nn.ReLU, nn.LeakyReLU)):
                layer.act, seq[j] = seq[j], nn.Identity()
                moved += 1
    return moved


def keep_channels_for_norms(model: nn.Module) -> int:
    """Mark each channels-last shuffle that a normalisation layer follows (in an
    nn.Sequential) to take its batch from the input's shape; returns how many."""
    marked = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = [m for m in seq if not isinstance(m, nn.Identity)]
        for layer, after in zip(layers, layers[1:]):
            if isinstance(layer, SubPixelConv) and isinstance(layer.shuffle, PhaseMajorShuffle) and isinstance(after, NORMS):
                layer.shuffle.batch_from_shape = True
                marked += 1
    return marked


NORMS = (nn.InstanceNorm2d, nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm)


def cpu_integer_ready(model: nn.Module, input_shape, tolerance: float = 1e-5, form: str = "four-phase") -> tuple[nn.Module, dict]:
    """BatchNorms folded and deconvolutions rewritten, verified against `model` in FP32."""
    folded = copy.deepcopy(model).eval()
    n = fold_batchnorms(folded)
    rewritten, names = rewrite_deconvs(folded, input_shape, tolerance, form, verify=False)
    upsamples = rewrite_upsample_convs(rewritten, input_shape)
    absorb_activations(rewritten)
    keep_channels_for_norms(rewritten)
    if n or names or upsamples:  # one float64 check of the whole rewrite (each pass costs a forward in float64)
        _verify(model, rewritten, input_shape, tolerance)
    return rewritten, {"batchnorms_folded": n, "deconvs_rewritten": names, "deconv_form": form, "upsample_convs_rewritten": upsamples}
