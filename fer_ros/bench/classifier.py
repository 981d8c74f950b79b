"""Bench section `classifier`: per-face latency of the backends at batch 1 and 32, from one run.

Uses a randomly initialised ARCH-1 (latency does not depend on the weights) exported to ONNX
and int8 ONNX in a temp dir; needs torch. Goals on a 2-core CPU for onnxruntime fp32:
<= 0.5 ms per face at batch 1 and <= 0.25 ms per face at batch 32.
"""

import tempfile
from pathlib import Path

import numpy as np

from . import timeit

BATCHES = (1, 32)
GOAL_MS_PER_FACE = {1: 0.5, 32: 0.25}


def random_checkpoint(path: str | Path, arch: str = "arch1", seed: int = 0) -> Path:
    """Save a randomly initialised model (random batch-norm statistics too) as a fer_ros checkpoint."""
    import torch

    from ..classes import FER7
    from ..learning.checkpoint import save
    from ..learning.models import build_model
    from ..preprocess import INPUT_SIZE, NORMALIZATION

    torch.manual_seed(seed)
    model = build_model(arch).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    meta = {"arch": arch, "classes": list(FER7), "input_size": INPUT_SIZE, "in_channels": 1,
            "normalization": dict(NORMALIZATION)}
    save(path, model, meta)
    return Path(path)


def run(args) -> list[dict]:
    from ..inference import load_backend
    from ..learning.export import export_onnx, quantize_onnx
    from ..preprocess import to_input

    repeat = max(5, args.repeat // 5) if args.quick else args.repeat
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        ckpt = random_checkpoint(Path(d) / "arch1.pt")
        fp32 = Path(export_onnx(ckpt, Path(d) / "arch1.onnx")["path"])
        int8 = Path(quantize_onnx(fp32, Path(d) / "arch1.int8.onnx",
                                  rng.integers(0, 256, (256, 48, 48), dtype=np.uint8))["path"])
        cases = [("onnxruntime fp32, 1 thread", load_backend(fp32, threads=1)),
                 ("onnxruntime fp32, 2 threads", load_backend(fp32, threads=2)),
                 ("onnxruntime int8, 1 thread", load_backend(int8, threads=1)),
                 ("torch fp32", load_backend(ckpt, "torch"))]
        inputs = {b: to_input(rng.integers(0, 256, (b, 48, 48), dtype=np.uint8)) for b in BATCHES}
        # one case at a time, torch last: its idle OpenMP threads spin and would slow whatever runs next
        times = {(name, b): timeit(lambda be=backend, x=inputs[b]: be.predict(x), max(5, repeat // (b // 8 or 1)))
                 for name, backend in cases for b in BATCHES}
    rows = []
    for (name, batch), t in sorted(times.items(), key=lambda item: item[0][1]):
        row = {"section": "classifier", "case": name, "batch": batch, **t, "ms_per_face": t["median_ms"] / batch,
               "speedup_vs_torch": times["torch fp32", batch]["median_ms"] / t["median_ms"]}
        if name.startswith("onnxruntime fp32"):
            row["goal_ms_per_face"] = GOAL_MS_PER_FACE[batch]
            row["meets_goal"] = row["ms_per_face"] <= GOAL_MS_PER_FACE[batch]
        rows.append(row)
    return rows
