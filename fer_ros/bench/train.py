"""Bench section `train`: seconds per FER2013 epoch (28,709 crops) for ARCH-1..4, fp32 vs bf16, and per epoch
of the mixture config (`training/configs/mix_distill.yaml`, when ../shared is beside the checkout).

Times the real training step (augmentation, forward, loss, backward, SGD) on random crops of
FER2013's shape and scales the median step to a full epoch: the crops an epoch draws set its cost.
"""

import time
from pathlib import Path

import numpy as np

FER2013_TRAIN = 28_709
MIXTURE = Path(__file__).resolve().parents[2] / "training" / "configs" / "mix_distill.yaml"


def mixture_crops(config: Path = MIXTURE) -> int | None:
    """Crops one epoch of `config` draws (its sources' sizes by their weights), or None when its data is absent."""
    import os

    from ..config import load_config
    from ..errors import DataError
    from ..framing import Framer
    from ..learning.sources import load_source
    from ..learning.train import TrainConfig

    here = os.getcwd()
    os.chdir(config.parents[2])  # the config's paths are relative to the repository root
    try:
        cfg = TrainConfig.from_yaml(config)
        framer = Framer(load_config(**cfg.framing))
        sources = cfg.source_list("sources")
        return sum(round(s.weight * len(load_source(s, framer, Path(cfg.crop_cache)))) for s in sources)
    except DataError:
        return None
    finally:
        os.chdir(here)


def run(args) -> list[dict]:
    import torch

    from ..learning.models import ARCHS, build_model
    from ..learning.train import TrainConfig, augment, cpu_has_bf16, make_optimizer, train_step

    cfg = TrainConfig()
    steps = 5 if args.quick else 20
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.batch_size, 1, 48, 48, generator=gen)
    y = torch.randint(0, 7, (cfg.batch_size,), generator=gen)
    modes = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    rows = []
    for arch in ARCHS:
        epoch_s = {}
        for mode in modes:
            model = build_model(arch).to(memory_format=torch.channels_last)
            opt = make_optimizer(model, cfg)

            def amp(mode=mode):
                return torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16")

            times = []
            for i in range(steps + 3):
                t0 = time.perf_counter()
                xb = augment(x, cfg, gen).contiguous(memory_format=torch.channels_last)
                train_step(model, opt, xb, y, cfg.label_smoothing, amp)
                if i >= 3:
                    times.append(time.perf_counter() - t0)
            epoch_s[mode] = float(np.median(times)) * FER2013_TRAIN / cfg.batch_size
            rows.append({"section": "train", "case": f"{arch} {mode}", "batch": cfg.batch_size,
                         "step_ms": float(np.median(times)) * 1e3, "epoch_s": epoch_s[mode],
                         "threads": torch.get_num_threads()})
        if "bf16" in epoch_s:
            rows[-1]["bf16_speedup"] = epoch_s["fp32"] / epoch_s["bf16"]
        if arch == "arch1":
            rows[-1].update(goal_epoch_s=45, ok=min(epoch_s.values()) <= 45)
            crops = mixture_crops()
            if crops:
                step_s = rows[-1]["step_ms"] / 1e3
                rows.append({"section": "train", "case": f"arch1 {modes[-1]} mixture", "batch": cfg.batch_size,
                             "step_ms": step_s * 1e3, "epoch_s": step_s * crops / cfg.batch_size,
                             "threads": torch.get_num_threads(), "crops": crops,
                             "vs_fer2013": crops / FER2013_TRAIN, "goal_vs_fer2013": 1.5,
                             "ok": crops / FER2013_TRAIN <= 1.5})
    return rows
