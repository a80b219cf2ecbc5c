"""Exact rewrites of ConvTranspose2d into plain convolutions.

ONNX Runtime's CPU provider has no INT8 ConvTranspose, and TensorRT has taken per-channel
deconvolution weight scales on different axes across versions. A plain Conv is INT8 on
every backend, so a deconvolution generator is rewritten before integer quantisation:

- stride 2, kernel 4, padding 1 (the DCGAN upsampler) -> the four-phase split: output
  pixel (2m+a, 2n+b) depends on a 2x2 window of the input, with a different 2x2 slice of
  the kernel for each phase (a, b). Four 2x2 convolutions on one padded input, then
  depth-to-space (PixelShuffle), cost exactly the MACs of the deconvolution. (The one-conv
  sub-pixel form would need 3x3 kernels: 2.25x the MACs.)
- kernel K, stride 1, padding 0 on a 1x1 input (the DCGAN stem) -> a 1x1 convolution to
  Cout*K*K channels reshaped to Cout x K x K: a matrix product.

Both are exact up to float summation order (checked: max abs error < 1e-5).
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


class SubPixelDeconv(nn.Module):
    """The sub-pixel form: one 3x3 convolution (padding 1) to 4*Cout channels, then
    PixelShuffle(2). Each phase uses 4 of the 9 taps (the rest are zero), so it costs
    2.25x the MACs, but it is two operators: on small generators the per-operator cost
    of ONNX Runtime's CPU provider outweighs the extra integer MACs.
    """

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        four = FourPhaseDeconv(deconv)
        cin, cout = deconv.in_channels, deconv.out_channels
        weight = torch.zeros(cout, 4, cin, 3, 3)
        for a in range(2):
            for b in range(2):
                # phase (a, b) reads padded rows a..a+1 and columns b..b+1 of the 3x3 window
                weight[:, 2 * a + b, :, a : a + 2, b : b + 2] = four.phases[2 * a + b].weight.detach()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=deconv.bias is not None)
        self.conv.weight.data.copy_(weight.reshape(4 * cout, cin, 3, 3))  # channel c*4 + phase
        if deconv.bias is not None:
            self.conv.bias.data.copy_(deconv.bias.detach().repeat_interleave(4))
        self.act: nn.Module = nn.Identity()  # an elementwise activation moved before the shuffle
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.conv(x)))


class StemAsConv(nn.Module):
    """ConvTranspose2d(k=K, s=1, p=0) on a 1x1 input as a 1x1 conv + reshape to K x K."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        cin, cout, kh, kw = deconv.weight.shape
        self.shape = (cout, kh, kw)
        self.conv = nn.Conv2d(cin, cout * kh * kw, 1, bias=deconv.bias is not None)
        self.conv.weight.data.copy_(deconv.weight.detach().reshape(cin, -1).t().reshape(-1, cin, 1, 1))
        if deconv.bias is not None:
            self.conv.bias.data.copy_(deconv.bias.detach().repeat_interleave(kh * kw))
        self.act: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)).reshape(x.shape[0], *self.shape)


def _plain(m: nn.ConvTranspose2d) -> bool:
    return m.groups == 1 and m.dilation == (1, 1) and m.output_padding == (0, 0) and m.padding_mode == "zeros"


DECONV_FORMS = {"four-phase": FourPhaseDeconv, "one-pass": OnePassDeconv, "sub-pixel": SubPixelDeconv}


def rewrite_for(m: nn.ConvTranspose2d, input_hw: tuple[int, int], form: str = "four-phase") -> nn.Module | None:
    """The exact conv form of one deconvolution, or None where no rewrite applies."""
    if not _plain(m):
        return None
    if m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1):
        return DECONV_FORMS[form](m)
    if m.stride == (1, 1) and m.padding == (0, 0) and tuple(input_hw) == (1, 1):
        return StemAsConv(m)
    return None


def _deconv_input_sizes(model: nn.Module, input_shape) -> dict[str, tuple[int, int]]:
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, n=n: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
        for n, m in model.named_modules()
        if isinstance(m, nn.ConvTranspose2d)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def rewrite_deconvs(model: nn.Module, input_shape, tolerance: float = 1e-5, form: str = "four-phase") -> tuple[nn.Module, list[str]]:
    """A copy of `model` with every rewritable ConvTranspose2d replaced, verified exact.

    Returns the model and the names of the layers rewritten. Deconvolutions of other
    shapes stay as they are (they then run in FP32 on ONNX Runtime's CPU provider).
    """
    if form not in DECONV_FORMS:
        raise GencompressError(f"unknown deconvolution rewrite {form!r}; known: {', '.join(DECONV_FORMS)}")
    rewritten = copy.deepcopy(model).eval()
    sizes = _deconv_input_sizes(rewritten, input_shape)
    done = []
    for name, hw in sizes.items():
        replacement = rewrite_for(rewritten.get_submodule(name), hw, form)
        if replacement is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(rewritten.get_submodule(parent_name) if parent_name else rewritten, attr, replacement)
        done.append(name)
    _verify(model, rewritten, input_shape, tolerance)
    return rewritten, done


def _verify(original: nn.Module, rewritten: nn.Module, input_shape, tolerance: float) -> None:
    x = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (original.eval()(x) - rewritten(x)).abs().max().item()
    if not err < tolerance:
        raise GencompressError(f"ConvTranspose rewrite is not exact: max abs error {err:.2e} >= {tolerance:.0e}")


def _fold_into(layer: nn.Module, bn: nn.BatchNorm2d) -> None:
    """BatchNorm (eval) after a conv/deconv folded into its weights and bias, exactly."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
    out_axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0  # deconv weights are (Cin, Cout/g, k, k)
    view = [1] * layer.weight.dim()
    view[out_axis] = -1
    layer.weight.data.mul_(scale.reshape(view))
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(shift)
    layer.bias = nn.Parameter(bias * scale + shift)


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
            if not isinstance(layer, (SubPixelDeconv, StemAsConv)):
                continue
            j = i + 1
            while j < len(seq) and isinstance(seq[j], nn.Identity):
                j += 1
            if j < len(seq) and isinstance(seq[j], (nn.ReLU, nn.LeakyReLU)):
                layer.act, seq[j] = seq[j], nn.Identity()
                moved += 1
    return moved


def cpu_integer_ready(model: nn.Module, input_shape, tolerance: float = 1e-5, form: str = "four-phase") -> tuple[nn.Module, dict]:
    """BatchNorms folded and deconvolutions rewritten, verified against `model` in FP32."""
    folded = copy.deepcopy(model).eval()
    n = fold_batchnorms(folded)
    _verify(model, folded, input_shape, tolerance)
    rewritten, names = rewrite_deconvs(folded, input_shape, tolerance, form)
    absorb_activations(rewritten)
    _verify(model, rewritten, input_shape, tolerance)
    return rewritten, {"batchnorms_folded": n, "deconvs_rewritten": names, "deconv_form": form}
