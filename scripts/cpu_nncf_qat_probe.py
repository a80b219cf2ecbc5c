"""Does NNCF's quantisation-aware training raise the OpenVINO all-INT8 form above its float-layer mix? One measurement.

    python scripts/cpu_nncf_qat_probe.py [--steps 100] [--lr 1e-4] [--out benchmarks/results/cpu_nncf_qat_probe.json]

The trained SD-VAE-layout decoder of the suite (the one layout whose `--target cpu` build keeps
layers float: openvino-nncf-searched), on the inputs of scripts/cpu_qat_probe.py: 16x16 crops of
photo latents, 192 of the training photos (the first 128 calibrate) and 48 of the held-out photos
(judge). NNCF's post-training INT8 on the PyTorch model (preset MIXED, as the build's
openvino-nncf-mixed candidate; every layer NNCF quantises stays INT8), then NNCF QAT: the same
quantised model trained `--steps` steps of 8 crops with Adam against the float model's outputs
(L1: distillation, as compress/distill.py does for the gpu targets' modelopt QAT). Before and after
training the model is converted to OpenVINO (ov.convert_model) and run by OpenVINO's CPU plugin in
f32 inference precision; PSNR of each against the float PyTorch model on the held-out crops.
Writes JSON with the seconds each part took and the conditions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


THREADS = 2
BATCH = 8


def openvino_psnr(qmodel, held: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR of the quantised model converted to OpenVINO IR and run by the CPU plugin (f32 hint)."""
    import openvino as ov

    from gencompress.metrics import psnr

    compiled = ov.Core().compile_model(ov.convert_model(qmodel.eval(), example_input=held[:1]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS})
    out = np.concatenate([compiled(held[i : i + BATCH].numpy())[0] for i in range(0, len(held), BATCH)])
    return float(psnr(reference.numpy(), out))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--out", default="benchmarks/results/cpu_nncf_qat_probe.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import nncf
    from cpu_qat_probe import sd_vae_and_crops, write_result

    from gencompress.batching import forward_batched
    from gencompress.progress import bar

    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    model, train, held = sd_vae_and_crops()
    reference = forward_batched(model, held, BATCH)
    result = {"model": "sd_vae_decoder_trained", "inputs": f"{len(train)} training and {len(held)} held-out 16x16 crops of photo latents",
              "quantisation": "nncf.quantize on the PyTorch model, preset MIXED, 128 calibration crops; every layer it quantises INT8",
              "steps": args.steps, "lr": args.lr, "batch": BATCH, "loss": "L1 against the float model's outputs"}
    start = time.perf_counter()
    calibration = nncf.Dataset([train[i : i + BATCH] for i in range(0, 128, BATCH)])
    qmodel = nncf.quantize(model, calibration, subset_size=128, preset=nncf.QuantizationPreset.MIXED)
    result["ptq_seconds"] = time.perf_counter() - start
    result["openvino_psnr_db_before"] = openvino_psnr(qmodel, held, reference)
    print(json.dumps({"before": result["openvino_psnr_db_before"]}), file=sys.stderr, flush=True)
    qmodel.train()
    optimizer = torch.optim.Adam(qmodel.parameters(), lr=args.lr)
    rng = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    losses = []
    for _ in bar(range(args.steps), "NNCF QAT", True):
        x = train[torch.randint(len(train), (BATCH,), generator=rng)]
        with torch.no_grad():
            target = model(x)
        loss = torch.nn.functional.l1_loss(qmodel(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    result["qat_seconds"] = time.perf_counter() - start
    result["loss_first_last_10"] = [float(np.mean(losses[:10])), float(np.mean(losses[-10:]))]
    result["openvino_psnr_db_after"] = openvino_psnr(qmodel, held, reference)
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
