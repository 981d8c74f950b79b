"""Shared fixtures: where ../shared is, and skips with a reason when it or a tool is absent."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FER2013 = SHARED / "data" / "fer2013" / "fer2013.csv.gz"
FERPLUS = SHARED / "data" / "ferplus" / "fer2013new.csv"
YUNET = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
FACES = SHARED / "samples" / "faces"
VIDEOS = SHARED / "samples" / "video"


def need(path: Path) -> Path:
    """Skip the test when a file from ../shared is absent (a user's fresh clone has none)."""
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only beside the project in CI and dev machines)")
    return path


def need_module(name: str, why: str = "") -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed{': ' + why if why else ''}")


def write_fer_csv(path: Path, labels, usages=None, seed: int = 0, bad_rows: dict | None = None) -> Path:
    """A FER2013-format CSV (gzip when path ends in .gz) of random 48x48 crops; bad_rows: {index: line}."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for i, label in enumerate(labels):
        px = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        usage = usages[i] if usages else "Training"
        lines.append((bad_rows or {}).get(i, f"{label},{px},{usage}"))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """The shipped model (its .pt beside it), else a random ARCH-1 exported once per session."""
    from fer_ros.inference import DEFAULT_MODEL

    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    path = tmp_path_factory.getbasetemp() / "random_arch1.onnx"
    if not path.is_file():
        need_module("torch", "the test model is exported from PyTorch")
        need_module("onnx", "the test model is exported to ONNX")
        from fer_ros.bench.classifier import random_checkpoint
        from fer_ros.learning.export import export_onnx

        export_onnx(random_checkpoint(path.with_suffix(".pt")), path)
    return path
