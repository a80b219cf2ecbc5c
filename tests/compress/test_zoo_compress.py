"""Every zoo generator through pruning and the CPU integer form, and the attention trap."""
from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from gencompress import zoo
from gencompress.compress import PruneConfig, prune
from gencompress.compress.prune import prune_module
from gencompress.data import draw_inputs
from gencompress.export.onnx_export import OnnxConfig, export_module
from gencompress.export.runners import OrtRunner, SessionFromOnnx
from gencompress.metrics import psnr
from gencompress.train.pretrained import zoo_bundle
from tests.compress.conftest import randomize_norms
from tests.helpers import cpu_int8_graph

SMALL = {"dcgan": {"nz": 16, "ngf": 16}, "upsample_conv": {"nz": 16, "ngf": 16},
         "resnet_generator": {"ngf": 16}, "vae_decoder": {"nz": 16, "ngf": 16}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_zoo_generator_prunes_and_runs_integer_convs_on_cpu(name, tmp_path):
    """DCGAN (deconvolutions), upsample+conv (Linear -> view stem), ResNet (InstanceNorm,
    residual Adds, kernel-3 deconvolutions) and VAE decoder: pruned 50%, then every conv
    and deconvolution an integer QLinearConv on ONNX Runtime's CPU provider."""
    torch.manual_seed(0)
    bundle = zoo_bundle(name, randomize_norms(zoo.build(name, **SMALL[name])), **SMALL[name])
    pruned = prune(bundle, PruneConfig(ratio=0.5, distill_steps=2, distill_batch=4), progress=False, fid_samples=0)
    stats = pruned.manifest["metrics"]["prune"]
    assert stats["macs_after"] < 0.7 * stats["macs_before"], stats
    shape = bundle.input_shape
    x = draw_inputs(tuple(shape), 16, bundle.input_distribution, 3)
    with torch.no_grad():
        assert pruned.model(x).shape == bundle.model(x).shape
    fp32 = export_module(pruned.model, shape, tmp_path / "fp32.onnx", OnnxConfig())
    path, step = cpu_int8_graph(pruned, tmp_path, samples=32)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "ConvTranspose" not in ops and "Conv" not in ops and "QLinearConv" in ops
    assert psnr(OrtRunner(SessionFromOnnx(fp32, 2)).infer(x.numpy()), OrtRunner(SessionFromOnnx(path, 2)).infer(x.numpy())) >= 30.0


class SelfAttention(nn.Module):
    """Attention whose softmax scale comes from the query width, as many codebases write it."""

    def __init__(self, channels: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.q(x).flatten(2).transpose(1, 2), self.k(x).flatten(2), self.v(x).flatten(2).transpose(1, 2)
        attn = torch.softmax(q @ k / q.shape[-1] ** 0.5, dim=-1)
        return x + (attn @ v).transpose(1, 2).reshape(n, c, h, w)


def test_attention_widths_and_softmax_scale_survive_pruning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 32, 3, 1, 1), nn.ReLU(), SelfAttention(32),
                          nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 3, 3, 1, 1)).eval()
    attention_in = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        before = model[2](attention_in)
    pruned, _ = prune_module(model, (4, 6, 6), "normal", PruneConfig(ratio=0.5, distill_steps=0))
    block = pruned[2]
    assert [block.q.out_channels, block.k.out_channels, block.v.out_channels] == [32, 32, 32]
    with torch.no_grad():  # same widths, same scale: the block computes what it did
        torch.testing.assert_close(block(attention_in), before, rtol=0, atol=1e-6)
    assert pruned[3].out_channels == 16  # the rest of the network is pruned
