"""`fer-ros export`: ONNX round trip, int8 quantization, TensorRT sidecars; verified before written."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fer_ros import export, modelfile
from fer_ros.classes import FER7
from fer_ros.cli import main
from fer_ros.errors import FerRosError
from fer_ros.inference import OnnxRuntimeBackend, load_backend
from fer_ros.preprocess import to_input

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from fer_ros.bench.classifier import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "arch1.pt")


@pytest.fixture(scope="module")
def onnx_path(ckpt):
    out = ckpt.with_suffix(".onnx")
    export.export_onnx(ckpt, out)
    return out


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory):
    """A small FER2013-format CSV: 60 PublicTest rows of random pixels and labels."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "mini.csv.gz"
    rows = ["emotion,pixels,Usage"] + [
        f"{rng.integers(7)},{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},{usage}"
        for usage in ["Training"] * 10 + ["PublicTest"] * 60]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    return path


def torch_probs(ckpt, x):
    from fer_ros.checkpoint import load_model
    from fer_ros.models import Classifier

    with torch.inference_mode():
        return Classifier(load_model(ckpt)[0]).eval()(torch.from_numpy(x)).numpy()


def test_onnx_round_trip(ckpt, onnx_path):
    meta = modelfile.read_metadata(onnx_path)
    assert {k: meta[k] for k in modelfile.REQUIRED_METADATA} == modelfile.read_metadata(ckpt)
    assert meta["source"] == "arch1.pt" and meta["opset"] == 17
    backend = load_backend(onnx_path)  # verifies the checksum
    for x in export.sample_inputs(meta, (1, 7, 32), seed=3):
        assert np.abs(backend.predict(x) - torch_probs(ckpt, x)).max() <= 1e-4
    proto = onnx.load(str(onnx_path))
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert "Softmax" in {n.op_type for n in proto.graph.node}
    assert not list(onnx_path.parent.glob("*.tmp*"))


def test_nothing_is_written_when_verification_fails(onnx_path, tmp_path):
    out = tmp_path / "bad.onnx"
    inputs = export.sample_inputs(modelfile.read_metadata(onnx_path), (2,))
    with pytest.raises(FerRosError, match="differ by .* nothing was written"):
        export._write_verified(out, onnx_path.read_bytes(), OnnxRuntimeBackend, lambda x: np.zeros((len(x), 7)),
                               inputs, 1e-4, "test")
    assert not list(tmp_path.iterdir())


def test_cli_export_default_output(ckpt, tmp_path, capsys):
    src = tmp_path / "model.pt"
    src.write_bytes(ckpt.read_bytes())
    assert main(["export", str(src)]) == 0
    assert "max |onnxruntime - torch|" in capsys.readouterr().out
    assert load_backend(tmp_path / "model.onnx").metadata["source"] == "model.pt"


@pytest.mark.parametrize("argv, words", [
    (["{onnx}"], "--format onnx starts from a .pt checkpoint"),
    (["{ckpt}", "-o", "{tmp}/x.engine"], "needs an .onnx name"),
    (["{onnx}", "--format", "tensorrt", "-o", "{tmp}/x.onnx"], "needs an .engine or .plan name"),
    (["{onnx}", "--format", "onnx-int8", "-o", "{tmp}/x.int8.onnx"], "pass --calib-data"),
    (["{tmp}/absent.pt"], "no such model file"),
])
def test_cli_errors(ckpt, onnx_path, tmp_path, capsys, argv, words):
    argv = [a.format(onnx=onnx_path, ckpt=ckpt, tmp=tmp_path) for a in argv]
    assert main(["export", *argv]) == 2
    assert words in capsys.readouterr().err


def test_int8_for_cpu(onnx_path, fer_csv, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    argv = ["export", str(onnx_path), "--format", "onnx-int8", "-o", str(out), "--calib-data", str(fer_csv),
            "--calib-size", "40", "--eval-size", "20"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "calibrated on 40 crops" in printed and "on 20 held-out crops" in printed and "accuracy" in printed
    backend = load_backend(out)
    assert backend.metadata["quantization"]["target"] == "cpu" and backend.metadata["arch"] == "arch1"
    x = to_input(np.random.default_rng(5).integers(0, 256, (16, 48, 48), dtype=np.uint8))
    assert np.abs(backend.predict(x) - load_backend(onnx_path).predict(x)).max() < 0.05
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert out.stat().st_size < onnx_path.stat().st_size / 2


def test_calibration_data_is_disjoint(fer_csv):
    calib, (images, labels) = export.calibration_data(fer_csv, "PublicTest", 25, 100, FER7)
    assert calib.shape == (25, 48, 48) and images.shape == (35, 48, 48) and labels.shape == (35,)
    as_set = {c.tobytes() for c in calib}
    assert not any(i.tobytes() in as_set for i in images)
    _, (_, labels) = export.calibration_data(fer_csv, "PublicTest", 25, 100, ("other", "classes"))
    assert labels is None


def test_int8_qdq_for_tensorrt_is_symmetric(onnx_path, tmp_path):
    out = tmp_path / "m.qdq.onnx"
    calib = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    export.quantize_onnx(onnx_path, out, calib, target="tensorrt")
    proto = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weights = [inits[n.input[0]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert weights and all(w.dtype == np.float32 for w in weights)  # float weights behind Q/DQ pairs
    assert load_backend(out).metadata["quantization"]["activations"] == "int8 symmetric"


def test_trtexec_command(onnx_path):
    meta = modelfile.read_metadata(onnx_path)
    assert export.trtexec_command("m.onnx", "m.engine", meta, workspace_mib=512) == (
        "trtexec --onnx=m.onnx --saveEngine=m.engine --fp16 --minShapes=input:1x1x48x48 "
        "--optShapes=input:8x1x48x48 --maxShapes=input:32x1x48x48 --memPoolSize=workspace:512")
    assert " --fp16 --int8 " in export.trtexec_command("q.onnx", "q.engine", meta, int8=True)


def test_sidecar_for_an_engine_built_by_trtexec(onnx_path, tmp_path, capsys):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine built by trtexec")
    argv = ["export", str(onnx_path), "--format", "tensorrt", "-o", str(engine), "--from-engine", str(engine)]
    assert main(argv) == 0
    assert f"trtexec --onnx={onnx_path} --saveEngine={engine} --fp16" in capsys.readouterr().out
    data, meta, side = modelfile.read_engine(engine)
    assert data == b"an engine built by trtexec" and side["precision"] == "fp16"
    assert meta["classes"] == load_backend(onnx_path).classes


def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it needs an NVIDIA GPU: Jetson or desktop)"
    if importlib.util.find_spec("cuda") is None:
        return "cuda-python is not installed (the tensorrt backend uses it for GPU memory)"
    return None


@pytest.mark.skipif(_tensorrt_reason() is not None, reason=str(_tensorrt_reason()))
def test_tensorrt_engine_round_trip(onnx_path, tmp_path):
    out = tmp_path / "m.engine"
    report = export.build_engine(onnx_path, out, batch=(1, 4, 16))
    assert report["max_abs_diff"] <= export.FP16_TOLERANCE
    backend = load_backend(out, "tensorrt", "cuda:0")
    assert backend.max_batch == 16 and backend.classes == load_backend(onnx_path).classes
    x = export.sample_inputs(backend.metadata, (20,))[0]  # more than max_batch: split in two
    assert np.abs(backend.predict(x) - load_backend(onnx_path).predict(x)).max() <= export.FP16_TOLERANCE
    Path(str(out) + ".json").unlink()
    with pytest.raises(FerRosError, match="sidecar"):
        load_backend(out, "tensorrt")
