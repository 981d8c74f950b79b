"""Post-hoc class balance: a checkpoint whose logits are corrected for FER2013's class prior.

FER2013's training labels are 3% disgust and 25% happy; a model of its posteriors rarely says the
rare classes that posed datasets are full of. Subtracting tau * log(prior) from the logits (Menon
et al. 2021, "post-hoc logit adjustment") estimates the posterior under a balanced prior. ARCH-1's
head is a convolution with a bias followed by global average pooling, so the correction is folded
into that bias: the network, its size and its cost stay exactly the same. The prior is the class
share of the training epochs: read from the checkpoint's metadata (`data.prior`), or counted again
on the training sources its config names; the new checkpoint's metrics are its own, scored again on
the first validation set (the old ones are kept under prior_correction).

    python training/prior_correction.py fer_ros/weights/fer2013_arch1.pt --tau 0.5 --out runs/prior05.pt
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.errors import FerRosError  # noqa: E402
from fer_ros.learning import checkpoint  # noqa: E402
from fer_ros.learning.evaluate import evaluate  # noqa: E402
from fer_ros.learning.train import TrainConfig, class_prior, load_splits  # noqa: E402


def correct(path: str, tau: float, out: str) -> np.ndarray:
    """Write `out`: the checkpoint at `path` with tau * log(prior) taken off its head's bias; returns the prior."""
    blob = checkpoint.load(path)
    meta = blob["metadata"]
    cfg = TrainConfig(**meta["config"])
    if "prior" in meta["data"]:
        prior = np.array([meta["data"]["prior"][c] for c in meta["classes"]])
    else:
        parts, sources, _ = load_splits(cfg)
        prior = class_prior(parts, [s.weight for s in sources])
    model, _ = checkpoint.load_model(path)
    bias = model.head[1].bias  # Dropout, Conv2d(128, classes), pool, flatten
    with torch.no_grad():
        bias -= tau * torch.from_numpy(np.log(np.maximum(prior, 1e-6))).float()
    before = {k: v for k, v in meta.get("metrics", {}).items() if k != "report"}
    meta = {**meta, "prior_correction": {"tau": tau, "prior": dict(zip(meta["classes"], prior.tolist())),
                                         "from": str(path), "metrics_before": before}}
    checkpoint.save(out, model, meta)
    first = cfg.source_list("val_sources")[0]
    val = evaluate(out, first.path, first.split, pixels=first.pixels, flip=cfg.tta_flip, progress=False)
    checkpoint.save(out, model, {**meta, "metrics": {**before, "val_accuracy": val["accuracy"],
                                                     "val_macro_f1": val["macro_f1"], "report": val}})
    return prior


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="an ARCH-1..4 GAP-head checkpoint (.pt)")
    p.add_argument("--tau", type=float, required=True, help="strength of the correction (0 = none, 1 = full)")
    p.add_argument("--out", required=True, help="the corrected checkpoint to write (.pt)")
    args = p.parse_args(argv)
    try:
        prior = correct(args.checkpoint, args.tau, args.out)
    except FerRosError as e:
        print(f"prior_correction: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: logits - {args.tau} * log(prior), prior {np.round(prior, 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
