"""Post-hoc edits of trained checkpoints, each written with metrics scored again on its first validation set.

- `correct`: post-hoc class balance (Menon et al. 2021): tau * log(prior) taken off the logits. ARCH-1's
  head is a convolution with a bias followed by global average pooling, so the correction is folded into
  that bias and the network, its size and its cost stay the same.
- `interpolate`: weight-space interpolation (WiSE-FT, Wortsman et al. 2022) between a model and one
  fine-tuned from it: every weight and batch-norm statistic is (1 - alpha) * a + alpha * b, one network of
  the same cost.
"""

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelFileError
from ..modelfile import state_dict_sha256
from . import checkpoint
from .evaluate import evaluate
from .train import TrainConfig, class_prior, load_splits


def _save_scored(out: str | Path, model: torch.nn.Module, meta: dict) -> None:
    """Save `model` with `meta`, its metrics replaced by its own accuracy on the config's first validation set."""
    cfg = TrainConfig(**meta["config"])
    checkpoint.save(out, model, meta)
    first = cfg.source_list("val_sources")[0]
    val = evaluate(str(out), first.path, first.split, pixels=first.pixels, flip=cfg.tta_flip, progress=False)
    checkpoint.save(out, model, {**meta, "metrics": {"val_accuracy": val["accuracy"],
                                                     "val_macro_f1": val["macro_f1"], "report": val}})


def _metrics(meta: dict) -> dict:
    return {k: v for k, v in meta.get("metrics", {}).items() if k != "report"}


def correct(path: str | Path, tau: float, out: str | Path) -> np.ndarray:
    """Write `out`: the checkpoint at `path` with tau * log(prior) taken off its head's bias; returns the prior.

    The prior is the class share of the training epochs: the checkpoint's `data.prior`, or counted again on
    the training sources its config names."""
    meta = checkpoint.load(path)["metadata"]
    if "prior" in meta["data"]:
        prior = np.array([meta["data"]["prior"][c] for c in meta["classes"]])
    else:
        parts, sources, _ = load_splits(TrainConfig(**meta["config"]))
        prior = class_prior(parts, [s.weight for s in sources])
    model, _ = checkpoint.load_model(path)
    bias = model.head[1].bias  # Dropout, Conv2d(128, classes), pool, flatten
    with torch.no_grad():
        bias -= tau * torch.from_numpy(np.log(np.maximum(prior, 1e-6))).float()
    _save_scored(out, model, {**meta, "prior_correction": {
        "tau": tau, "prior": dict(zip(meta["classes"], prior.tolist())), "from": str(path),
        "metrics_before": _metrics(meta)}})
    return prior


def interpolate(a: str | Path, b: str | Path, alpha: float, out: str | Path) -> None:
    """Write `out`: (1 - alpha) * a + alpha * b, weights and batch-norm statistics alike; metadata from b."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    model_a, meta_a = checkpoint.load_model(a)
    model_b, meta_b = checkpoint.load_model(b)
    for key in ("arch", "classes", "input_size", "in_channels"):
        if meta_a[key] != meta_b[key]:
            raise ModelFileError(f"{a} and {b}: different {key} ({meta_a[key]} / {meta_b[key]}); "
                                 "interpolate two checkpoints of one network")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    sha = [state_dict_sha256(sa), state_dict_sha256(sb)]  # before b's tensors are overwritten in place
    mixed = {k: torch.lerp(v.float(), sb[k].float(), alpha).to(v.dtype) if v.is_floating_point() else sb[k]
             for k, v in sa.items()}
    model_b.load_state_dict(mixed)
    _save_scored(out, model_b, {**meta_b, "interpolation": {
        "alpha": alpha, "from": [str(a), str(b)],
        "sha256": sha, "metrics_of_b": _metrics(meta_b)}})
