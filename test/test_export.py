"""`fer-ros export`: ONNX round trip, int8 quantization, TensorRT sidecars; verified before written."""

import gzip
import importlib.util
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fer_ros import modelfile
from fer_ros.classes import FER7
from fer_ros.cli import main
from fer_ros.errors import FerRosError
from fer_ros.inference import SHIPPED, OnnxRuntimeBackend, load_backend, tensorrt_provider_options
from fer_ros.learning import export
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


@pytest.fixture(scope="module")
def quantized(onnx_path):
    """{"tensorrt": Q/DQ ONNX for TensorRT, "cpu": uint8 ONNX for the CPU}, calibrated on random crops."""
    calib = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    out = {}
    for target in ("tensorrt", "cpu"):
        out[target] = onnx_path.with_name(f"m.{target}.int8.onnx")
        export.quantize_onnx(onnx_path, out[target], calib, target=target)
    return out


def torch_probs(ckpt, x):
    from fer_ros.learning.checkpoint import load_model
    from fer_ros.learning.models import Classifier

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


def test_int8_qdq_for_tensorrt_is_symmetric(quantized):
    out = quantized["tensorrt"]
    proto = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weights = [inits[n.input[0]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    assert weights and all(w.dtype == np.float32 for w in weights)  # float weights behind Q/DQ pairs
    assert load_backend(out).metadata["quantization"]["activations"] == "int8 symmetric"


def test_int8_for_tensorrt_keeps_input_and_softmax_float(onnx_path, quantized):
    proto = onnx.load(str(quantized["tensorrt"]))
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    readers = {i: n.op_type for n in proto.graph.node for i in n.input}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    first, softmax = convs[0], next(n for n in proto.graph.node if n.op_type == "Softmax")
    assert readers["input"] == "Conv" and first.input[0] == "input"  # no Q/DQ on the 256 grey levels
    assert softmax.output[0] == "probabilities" and producer["probabilities"] == "Softmax"
    assert all(producer[c.input[0]] == "DequantizeLinear" for c in convs[1:])  # the rest stays int8
    x = export.sample_inputs(modelfile.read_metadata(onnx_path), (64,))[0]
    probs = load_backend(quantized["tensorrt"]).predict(x)
    assert np.abs(probs * 127 - np.round(probs * 127)).max() > 0.05  # not in steps of 1/127
    assert np.abs(probs - load_backend(onnx_path).predict(x)).max() < 0.05


def test_quantization_starts_from_a_float_onnx(quantized, tmp_path):
    calib = np.zeros((4, 48, 48), np.uint8)
    with pytest.raises(FerRosError, match="m.cpu.int8.onnx: int8 quantization starts from a float32 ONNX, not an int8"):
        export.quantize_onnx(quantized["cpu"], tmp_path / "again.onnx", calib)


# attribute sets of the real modules (TensorRT's python/src/infer/pyCore.cpp at release/8.6, release/10.12, 11.1)
STAND_INS = {
    "8.6.1": ({"FP16", "INT8", "TF32"}, {"EXPLICIT_BATCH", "EXPLICIT_PRECISION"}),
    "10.12.0.36": ({"FP16", "BF16", "INT8", "TF32"}, {"EXPLICIT_BATCH", "STRONGLY_TYPED"}),
    "11.1.0.10": ({"TF32", "DEBUG"}, {"STRONGLY_TYPED"}),
}


def stand_in(version: str) -> SimpleNamespace:
    builder, network = STAND_INS[version]
    return SimpleNamespace(__version__=version, BuilderFlag=SimpleNamespace(**{f: 1 for f in builder}),
                           NetworkDefinitionCreationFlag=SimpleNamespace(**{f: 0 for f in network}))


@pytest.mark.parametrize("version, model, network, builder, precision", [
    ("8.6.1", "fp32", ("EXPLICIT_BATCH",), ("FP16",), "fp16"),
    ("8.6.1", "int8", ("EXPLICIT_BATCH",), ("FP16", "INT8"), "int8"),
    ("10.12.0.36", "fp32", (), ("FP16",), "fp16"),
    ("10.12.0.36", "int8", ("STRONGLY_TYPED",), (), "int8"),  # Q/DQ: strongly typed, no precision flags
    ("11.1.0.10", "fp32", (), (), "fp32"),  # no FP16 flag: an fp32 ONNX is an FP32 engine...
    ("11.1.0.10", "fp16", (), (), "fp16"),  # ...and FP16 comes from an FP16 ONNX
    ("11.1.0.10", "int8", (), (), "int8"),
])
def test_build_path_per_tensorrt_version(version, model, network, builder, precision):
    trt = stand_in(version)
    plan = export.plan_for(trt, model)
    assert (plan.network_flags, plan.builder_flags, plan.precision) == (network, builder, precision)
    assert all(hasattr(trt.BuilderFlag, f) for f in plan.builder_flags)  # no AttributeError on that version
    assert all(hasattr(trt.NetworkDefinitionCreationFlag, f) for f in plan.network_flags)
    assert export.build_plan("10.11.0", True, "int8").builder_flags == ("FP16", "INT8")  # before 10.12: flags


@pytest.mark.parametrize("version, model, flags", [
    ("8.6.1", "fp32", " --fp16 "), ("8.6.1", "int8", " --fp16 --int8 "), ("10.12.0.36", "int8", " --stronglyTyped "),
    ("11.1.0.10", "fp16", " "), ("11.1.0.10", "int8", " "),
])
def test_trtexec_command_per_version(onnx_path, version, model, flags):
    meta = modelfile.read_metadata(onnx_path)
    assert export.trtexec_command("m.onnx", "m.engine", meta, export.plan_for(stand_in(version), model), 512) == (
        f"trtexec --onnx=m.onnx --saveEngine=m.engine{flags}--minShapes=input:1x1x48x48 "
        "--optShapes=input:8x1x48x48 --maxShapes=input:32x1x48x48 --memPoolSize=workspace:512")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_cli_without_tensorrt_prints_each_versions_line(onnx_path, tmp_path, capsys):
    src = tmp_path / "best.onnx"
    src.write_bytes(onnx_path.read_bytes())
    assert main(["export", str(src), "--format", "tensorrt"]) == 2  # nothing done: it writes nothing
    assert "TensorRT's Python module is not installed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.onnx"]
    assert main(["export", str(src), "--format", "tensorrt", "--trtexec"]) == 0
    out, err = capsys.readouterr()
    fp16, engine = tmp_path / "best.fp16.onnx", tmp_path / "best.engine"
    assert f"TensorRT 8.6-10.11, 10.12-10.x: trtexec --onnx={src} --saveEngine={engine} --fp16 --minShapes" in out
    assert f"TensorRT 11+: trtexec --onnx={fp16} --saveEngine={engine} --minShapes" in out
    backend = load_backend(fp16)  # sealed and verified like any fer_ros ONNX
    assert export.model_precision(backend.metadata) == "fp16" and backend.metadata["source"] == "best.onnx"
    proto = onnx.load(str(fp16))
    io = [t.type.tensor_type.elem_type for t in (*proto.graph.input, *proto.graph.output)]
    assert io == [onnx.TensorProto.FLOAT] * 2  # the backends feed and read float32
    weights = [i for i in proto.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    x = export.sample_inputs(backend.metadata, (16,))[0]
    assert np.abs(backend.predict(x) - load_backend(src).predict(x)).max() <= export.FP16_TOLERANCE


@pytest.mark.parametrize("batch", [["2", "8", "32"], ["1", "64", "32"]])
def test_batch_profile_must_start_at_one(onnx_path, tmp_path, capsys, batch):
    argv = ["export", str(onnx_path), "--format", "tensorrt", "-o", str(tmp_path / "m.engine"), "--batch", *batch]
    assert main(argv) == 2
    assert f"--batch {' '.join(batch)}: MIN must be 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(FerRosError, match="MIN must be 1"):
        export.build_engine(onnx_path, tmp_path / "m.engine", batch=tuple(map(int, batch)))
    assert export.check_batch((1, 1, 1)) == (1, 1, 1)


def test_engine_precision_follows_the_onnx(onnx_path, quantized, tmp_path):
    with pytest.raises(FerRosError, match="an int8 engine needs an ONNX quantized for TensorRT .*not an fp32 one"):
        export.build_engine(onnx_path, tmp_path / "m.engine", int8=True)
    with pytest.raises(FerRosError, match="was quantized for the cpu"):
        export.build_engine(quantized["cpu"], tmp_path / "m.engine")


def test_tensorrt_provider_cache_per_checksum(onnx_path, quantized, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shipped = tmp_path / "other" / onnx_path.name  # same file and tensor names, other weights
    shipped.parent.mkdir()
    shipped.write_bytes(SHIPPED["fer2013"].read_bytes())
    caches = {}
    for path in (onnx_path, shipped):
        options = tensorrt_provider_options(path, 1)
        digest = OnnxRuntimeBackend(path).session.get_modelmeta().custom_metadata_map[modelfile.SHA_KEY]
        caches[path] = Path(options["trt_engine_cache_path"])
        assert caches[path] == tmp_path / ".cache" / "fer_ros" / "ort_tensorrt" / digest and caches[path].is_dir()
        assert options["device_id"] == 1 and options["trt_profile_min_shapes"] == "input:1x1x48x48"
        assert options["trt_int8_enable"] is False
    assert caches[onnx_path] != caches[shipped]
    assert tensorrt_provider_options(onnx_path)["trt_engine_cache_path"] == str(caches[onnx_path])
    assert tensorrt_provider_options(quantized["tensorrt"])["trt_int8_enable"] is True


def test_tensorrt_provider_refuses_a_cpu_int8_onnx(quantized):
    with pytest.raises(FerRosError, match="quantized for the cpu .*which TensorRT cannot build; use device cpu"):
        load_backend(quantized["cpu"], device="tensorrt")


def test_sidecar_for_an_engine_built_by_trtexec(onnx_path, tmp_path, capsys):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine built by trtexec")
    argv = ["export", str(onnx_path), "--format", "tensorrt", "-o", str(engine), "--from-engine", str(engine)]
    assert main(argv) == 0
    assert f"trtexec --onnx={onnx_path} --saveEngine={engine} --fp16" in capsys.readouterr().out
    data, meta, side = modelfile.read_engine(engine)
    assert data == b"an engine built by trtexec" and side["precision"] == "fp16"
    assert meta["classes"] == load_backend(onnx_path).classes
    if importlib.util.find_spec("tensorrt") is None:  # from Python, with no printed trtexec line to go by
        export.write_engine_sidecar(onnx_path, engine)
        assert modelfile.read_engine(engine)[2]["precision"] == "fp16 with trtexec --fp16, else fp32"


def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it needs an NVIDIA GPU: Jetson or desktop)"
    try:
        from cuda.bindings import runtime
    except ImportError:
        return "cuda-python is not installed (the tensorrt backend uses it for GPU memory)"
    err, count = runtime.cudaGetDeviceCount()
    if err != runtime.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA GPU here ({err}, {count} devices)"
    return None


@pytest.mark.skipif(_tensorrt_reason() is not None, reason=str(_tensorrt_reason()))
def test_tensorrt_engine_round_trip(onnx_path, tmp_path):
    out = tmp_path / "m.engine"
    report = export.build_engine(onnx_path, out, batch=(1, 4, 16))
    assert report["max_abs_diff"] <= export.FP16_TOLERANCE
    backend = load_backend(out, "tensorrt", "cuda:0")
    assert backend.max_batch == 16 and backend.classes == load_backend(onnx_path).classes
    x = export.sample_inputs(backend.metadata, (20,))[0]  # more than max_batch: split in two
    expected = load_backend(onnx_path).predict(x)
    assert np.abs(backend.predict(x) - expected).max() <= export.FP16_TOLERANCE
    worker = {}  # the node runs inference on a worker thread
    thread = threading.Thread(target=lambda: worker.update(p=backend.predict(x)))
    thread.start()
    thread.join()
    assert np.abs(worker["p"] - expected).max() <= export.FP16_TOLERANCE
    Path(str(out) + ".json").unlink()
    with pytest.raises(FerRosError, match="sidecar"):
        load_backend(out, "tensorrt")


@pytest.mark.skipif(_tensorrt_reason() is not None, reason=str(_tensorrt_reason()))
def test_tensorrt_int8_engine(onnx_path, quantized, tmp_path):
    report = export.build_engine(quantized["tensorrt"], tmp_path / "m.int8.engine", int8=True)
    assert report["precision"] == "int8"
    x = export.sample_inputs(modelfile.read_metadata(onnx_path), (8,))[0]
    probs = load_backend(tmp_path / "m.int8.engine", "tensorrt").predict(x)
    assert np.abs(probs - load_backend(onnx_path).predict(x)).max() < 0.1
