"""PyTorch checkpoints that carry their metadata and a checksum, loaded with weights_only=True.

A checkpoint is a plain dict (so `torch.load(weights_only=True)` can read it)::

    {"format": "fer_ros.checkpoint/1",
     "metadata": {"arch", "classes", "input_size", "in_channels", "normalization", ...},
     "state_dict": {...}, "sha256": "<hash of state_dict>",
     "train_state": {...}}   # optional: optimizer, scheduler, epoch, history (for --resume)
"""

from pathlib import Path

import torch

from ..errors import ModelFileError
from ..modelfile import CHECKPOINT_FORMAT, REQUIRED_METADATA, state_dict_sha256
from ..modelfile import read_checkpoint as load  # noqa: F401  (the learning wing's name for it)
from .models import build_model


def save(path: str | Path, model: torch.nn.Module, metadata: dict, train_state: dict | None = None) -> None:
    """Write a checkpoint atomically (temp file, then rename)."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": CHECKPOINT_FORMAT, "metadata": metadata, "state_dict": state, "sha256": state_dict_sha256(state)}
    if train_state is not None:
        blob["train_state"] = train_state
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, metadata) from a checkpoint."""
    blob = load(path, map_location)
    meta = blob["metadata"]
    model = build_model(meta["arch"], n_classes=len(meta["classes"]), in_channels=meta["in_channels"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not fit {meta['arch']}: {e}") from None
    return model.eval(), meta
