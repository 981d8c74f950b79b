"""Inference backends: ONNX Runtime and torch agree, bad model files fail clearly at load time."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACES, need

from fer_ros import modelfile
from fer_ros.errors import FerRosError, ModelFileError
from fer_ros.inference import load_backend
from fer_ros.preprocess import magnify, to_input

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fer_ros.bench.classifier import random_checkpoint
    from fer_ros.learning.export import export_onnx

    d = tmp_path_factory.mktemp("models")
    ckpt = random_checkpoint(d / "arch1.pt")
    return ckpt, Path(export_onnx(ckpt, d / "arch1.onnx")["path"])


@pytest.fixture(scope="module")
def ort_backend(models):
    return load_backend(models[1])


def crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_onnxruntime_and_torch_agree(models, ort_backend):
    torch_backend = load_backend(models[0], "torch")
    for n in (1, 5, 32):
        x = to_input(crops(n, seed=n))
        p_ort, p_torch = ort_backend.predict(x), torch_backend.predict(x)
        assert p_ort.shape == p_torch.shape == (n, 7) and p_ort.dtype == np.float32
        assert np.abs(p_ort - p_torch).max() <= 1e-4
        assert np.allclose(p_ort.sum(1), 1, atol=1e-5)


def test_agreement_on_real_photos(models, ort_backend):
    paths = sorted(need(FACES).glob("*.jpg"))[:6]
    grey = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (48, 48), interpolation=cv2.INTER_AREA)
            for p in paths]
    x = to_input(grey)
    assert np.abs(ort_backend.predict(x) - load_backend(models[0], "torch").predict(x)).max() <= 1e-4


def test_backend_describes_the_model(ort_backend):
    b = ort_backend
    assert b.name == "onnxruntime" and b.classes == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert b.input_size == 48 and b.in_channels == 1 and b.normalization == {"mean": 0.0, "std": 255.0}
    assert b.metadata["arch"] == "arch1" and b.metadata["opset"] == 17


def test_predict_batches(ort_backend):
    assert ort_backend.predict(np.zeros((0, 1, 48, 48), np.float32)).shape == (0, 7)
    x = to_input(crops(10))
    whole = ort_backend.predict(x)
    ort_backend.max_batch = 4  # split into 4 + 4 + 2
    try:
        assert np.array_equal(ort_backend.predict(x), whole)
    finally:
        ort_backend.max_batch = None
    assert np.allclose(ort_backend.predict(x.astype(np.float64)), whole, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, 1, 48, 48\)"):
        ort_backend.predict(np.zeros((2, 1, 64, 64), np.float32))


def test_classify_averages_the_test_time_views(ort_backend):
    c = crops(5)
    x = to_input(c)
    assert np.array_equal(ort_backend.classify(c), ort_backend.predict(x))
    mirror = (ort_backend.predict(x) + ort_backend.predict(x[..., ::-1].copy())) / 2
    assert np.allclose(ort_backend.classify(c, flip=True), mirror, atol=1e-6)
    z = magnify(x, 1.1)
    four = [ort_backend.predict(np.ascontiguousarray(v)) for v in (x, z, x[..., ::-1], z[..., ::-1])]
    assert np.allclose(ort_backend.classify(c, flip=True, zoom=1.1), np.mean(four, 0), atol=1e-6)
    assert not np.allclose(ort_backend.classify(c, zoom=1.1), ort_backend.classify(c), atol=1e-4)
    assert ort_backend.classify(c[:0], flip=True, zoom=1.1).shape == (0, 7)


def test_thread_counts_agree(models, ort_backend):
    x = to_input(crops(8))
    assert np.abs(load_backend(models[1], threads=2).predict(x) - ort_backend.predict(x)).max() <= 1e-6


def test_wrong_file_type_for_the_backend(models):
    ckpt, onnx_path = models
    with pytest.raises(ModelFileError, match="fer-ros export .*arch1.pt"):
        load_backend(ckpt, "onnxruntime")
    with pytest.raises(ModelFileError, match="use backend onnxruntime"):
        load_backend(onnx_path, "torch")
    with pytest.raises(ModelFileError, match="--format tensorrt"):
        load_backend(onnx_path, "tensorrt")


def test_bad_backend_or_device(models):
    with pytest.raises(FerRosError, match="unknown backend 'tflite'"):
        load_backend(models[1], "tflite")
    with pytest.raises(FerRosError, match="device 'gpu0' is not one of"):
        load_backend(models[1], device="gpu0")
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(FerRosError, match="onnxruntime-gpu"):
            load_backend(models[1], device="cuda:0")
    if not torch.cuda.is_available():
        with pytest.raises(FerRosError, match="no CUDA device"):
            load_backend(models[0], "torch", device="cuda")


def test_missing_and_damaged_files(models, tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_backend(tmp_path / "absent.onnx")
    data = models[1].read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelFileError, match="truncated.onnx: not a loadable ONNX model"):
        load_backend(truncated)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(models[0].read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="broken.pt: not a readable PyTorch checkpoint"):
        load_backend(broken, "torch")


def test_tampered_weights(models, tmp_path):
    proto = onnx.load(str(models[1]))
    weight = next(i for i in proto.graph.initializer if i.dims and np.prod(i.dims) > 100)
    data = models[1].read_bytes()
    at = data.index(weight.raw_data[:64])
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_backend(tampered)


def test_mismatched_metadata(models, tmp_path):
    meta = dict(modelfile.read_metadata(models[1]))
    cases = [({"normalization": {"mean": 0.5, "std": 0.25}}, "normalization"),
             ({"input_size": 64}, "graph input shape"),
             ({"classes": ["a", "b", "c"]}, "3 classes")]
    for change, words in cases:
        path = tmp_path / "mismatch.onnx"
        path.write_bytes(modelfile.onnx_bytes(onnx.load(str(models[1])), {**meta, **change}))
        with pytest.raises(ModelFileError, match=words):
            load_backend(path)


def test_onnx_without_metadata(models, tmp_path):
    proto = onnx.load(str(models[1]))
    del proto.metadata_props[:]
    path = tmp_path / "plain.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelFileError, match="no fer_ros metadata"):
        load_backend(path)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_tensorrt_backend_without_tensorrt(models, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not built here")
    modelfile.write_sidecar(engine, engine.read_bytes(), modelfile.read_metadata(models[1]))
    with pytest.raises(FerRosError, match="needs TensorRT's Python module"):
        load_backend(engine, "tensorrt")
