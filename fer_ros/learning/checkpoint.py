"""PyTorch checkpoints that carry their metadata and a checksum, loaded with weights_only=True.

A checkpoint is a plain dict (so `torch.load(weights_only=True)` can read it)::

    {"format": "fer_ros.checkpoint/1",
     "metadata": {"arch", "classes", "input_size", "in_channels", "normalization", ...},
     "state_dict": {...}, "sha256": "<hash of state_dict>",
     "train_state": {...}}   # optional: optimizer, scheduler, epoch, history (for --resume)
"""

import hashlib
from pathlib import Path

import torch

from .errors import ModelFileError
from .modelfile import REQUIRED_METADATA
from .models import build_model

FORMAT = "fer_ros.checkpoint/1"


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(path: str | Path, model: torch.nn.Module, metadata: dict, train_state: dict | None = None) -> None:
    """Write a checkpoint atomically (temp file, then rename)."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "metadata": metadata, "state_dict": state, "sha256": state_dict_sha256(state)}
    if train_state is not None:
        blob["train_state"] = train_state
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load(path: str | Path, map_location: str = "cpu") -> dict:
    """Read and verify a checkpoint; raise ModelFileError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fer_ros checkpoint (format {FORMAT} expected)")
    missing = [k for k in REQUIRED_METADATA if k not in blob["metadata"]]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}")
    if state_dict_sha256(blob["state_dict"]) != blob["sha256"]:
        raise ModelFileError(f"{path}: checksum mismatch, the weights are corrupt")
    return blob


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
