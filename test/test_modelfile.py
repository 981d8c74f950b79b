"""Model file metadata and checksums: sealed ONNX, engine sidecars, metadata validation."""

import json

import numpy as np
import pytest

from fer_ros import modelfile
from fer_ros.errors import ModelFileError
from fer_ros.preprocess import NORMALIZATION

onnx = pytest.importorskip("onnx")

META = {"arch": "arch1", "classes": ["angry", "happy", "neutral"], "input_size": 48, "in_channels": 1,
        "normalization": dict(NORMALIZATION)}
WEIGHTS = np.array([[0.5, -1.0, 2.0]], np.float32)


def tiny_model():
    """A real 3-class ONNX classifier: global average pool -> 1x3 matmul -> softmax, dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 48, 48])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(WEIGHTS, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture
def sealed(tmp_path):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(modelfile.onnx_bytes(tiny_model(), META))
    return path


def test_kind_from_suffix():
    assert [modelfile.kind(f"m{s}") for s in (".pt", ".onnx", ".engine", ".plan", ".ONNX")] == \
        ["pt", "onnx", "engine", "engine", "onnx"]
    with pytest.raises(ModelFileError, match="unknown model file type '.h5'"):
        modelfile.kind("model.h5")


def test_check_metadata_accepts_and_normalises():
    meta = modelfile.check_metadata(META, "m.onnx")
    assert meta["classes"] == ("angry", "happy", "neutral")
    assert meta["normalization"] == NORMALIZATION


@pytest.mark.parametrize("change, words", [
    ({"normalization": {"mean": 0.5, "std": 0.5}}, "normalization"),
    ({"normalization": "0-1"}, "normalization"),
    ({"classes": ["happy", "happy"]}, "bad classes"),
    ({"classes": "happy"}, "bad classes"),
    ({"input_size": 0}, "bad input_size"),
    ({"in_channels": "1"}, "bad in_channels"),
])
def test_check_metadata_rejects(change, words):
    with pytest.raises(ModelFileError, match=words):
        modelfile.check_metadata({**META, **change}, "m.onnx")


def test_check_metadata_names_missing_keys():
    with pytest.raises(ModelFileError, match=r"lacks \['normalization'\]"):
        modelfile.check_metadata({k: v for k, v in META.items() if k != "normalization"}, "m.onnx")


def test_check_io():
    modelfile.check_io(META, ["batch", 1, 48, 48], ["batch", 3], "m")
    modelfile.check_io(META, (-1, 1, 48, 48), (-1, 3), "m")
    for shape_in, shape_out in [(["b", 3, 48, 48], ["b", 3]), (["b", 1, 64, 64], ["b", 3]),
                                (["b", 1, 48, 48], ["b", 7]), (["b", 48, 48], ["b", 3])]:
        with pytest.raises(ModelFileError, match="does not match"):
            modelfile.check_io(META, shape_in, shape_out, "m")


def test_sealed_onnx_round_trip(sealed):
    session, meta = modelfile.open_onnx(sealed)
    assert meta == modelfile.check_metadata(META, sealed)
    assert modelfile.read_metadata(sealed) == meta
    x = np.random.default_rng(0).random((5, 1, 48, 48), dtype=np.float32)
    assert session.run(None, {"input": x})[0].shape == (5, 3)
    props = session.get_modelmeta().custom_metadata_map
    assert len(props[modelfile.SHA_KEY]) == 64 and props[modelfile.SHA_KEY] != modelfile.PLACEHOLDER


def test_resealing_replaces_the_old_entries(sealed):
    model = onnx.load(str(sealed))
    data = modelfile.onnx_bytes(model, {**META, "quantization": {"format": "QDQ"}})
    keys = [p.key for p in onnx.load_from_string(data).metadata_props]
    assert sorted(keys) == [modelfile.META_KEY, modelfile.SHA_KEY]
    sealed.write_bytes(data)
    assert modelfile.read_metadata(sealed)["quantization"] == {"format": "QDQ"}


def test_tampered_weights_fail_the_checksum(sealed):
    data = sealed.read_bytes()
    at = data.index(WEIGHTS.tobytes())
    sealed.write_bytes(data[:at] + np.float32(0.75).tobytes() + data[at + 4:])  # still a valid model
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        modelfile.open_onnx(sealed)


def test_tampered_digest_fails(sealed):
    session, _ = modelfile.open_onnx(sealed)
    props = dict(session.get_modelmeta().custom_metadata_map)
    data = sealed.read_bytes()
    digest = props[modelfile.SHA_KEY]
    forged = ("1" if digest[0] != "1" else "2") + digest[1:]
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        modelfile.verify_onnx(data.replace(digest.encode(), forged.encode()), {**props, modelfile.SHA_KEY: forged},
                              sealed)
    with pytest.raises(ModelFileError, match="malformed"):
        modelfile.verify_onnx(data, {**props, modelfile.SHA_KEY: "abc"}, sealed)


def test_metadata_that_is_not_json(sealed):
    session, _ = modelfile.open_onnx(sealed)
    props = {**session.get_modelmeta().custom_metadata_map, modelfile.META_KEY: "{not json"}
    with pytest.raises(ModelFileError, match="not JSON"):
        modelfile.verify_onnx(sealed.read_bytes(), props, sealed)


def test_onnx_without_fer_ros_metadata(tmp_path):
    path = tmp_path / "plain.onnx"
    path.write_bytes(tiny_model().SerializeToString())
    with pytest.raises(ModelFileError, match="no fer_ros metadata.*fer-ros export"):
        modelfile.open_onnx(path)


@pytest.mark.parametrize("damage, words", [
    (lambda d: d[: len(d) // 2], "not a loadable ONNX model"),
    (lambda d: b"", "empty"),
    (lambda d: bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)), "not a loadable ONNX"),
])
def test_broken_onnx_files(sealed, damage, words):
    sealed.write_bytes(damage(sealed.read_bytes()))
    with pytest.raises(ModelFileError, match=words):
        modelfile.open_onnx(sealed)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        modelfile.read_metadata(tmp_path / "absent.onnx")


def test_metadata_that_does_not_fit_the_graph(tmp_path):
    path = tmp_path / "big.onnx"
    path.write_bytes(modelfile.onnx_bytes(tiny_model(), {**META, "input_size": 64}))
    with pytest.raises(ModelFileError, match=r"graph input shape \['batch', 1, 48, 48\]"):
        modelfile.open_onnx(path)
    path.write_bytes(modelfile.onnx_bytes(tiny_model(), {**META, "classes": ["a", "b"]}))
    with pytest.raises(ModelFileError, match="2 classes"):
        modelfile.open_onnx(path)


def test_engine_sidecar_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine bytes")
    side = modelfile.write_sidecar(engine, engine.read_bytes(), META, tensorrt="10.3.0", precision="fp16")
    assert side == tmp_path / "m.engine.json"
    data, meta, info = modelfile.read_engine(engine)
    assert data == b"serialized engine bytes" and meta["classes"] == tuple(META["classes"])
    assert info["tensorrt"] == "10.3.0" and info["precision"] == "fp16"
    assert modelfile.read_metadata(engine) == meta
    assert not list(tmp_path.glob("*.tmp"))


def test_engine_problems(tmp_path):
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"engine")
    with pytest.raises(ModelFileError, match="sidecar m.plan.json is missing"):
        modelfile.read_engine(engine)
    side = modelfile.write_sidecar(engine, b"engine", META)
    engine.write_bytes(b"other engine")
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        modelfile.read_engine(engine)
    side.write_text("{truncated")
    with pytest.raises(ModelFileError, match="not a JSON sidecar"):
        modelfile.read_engine(engine)
    side.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(ModelFileError, match="not a fer_ros engine sidecar"):
        modelfile.read_engine(engine)
    modelfile.write_sidecar(engine, b"other engine", {**META, "normalization": {"mean": 127.5, "std": 127.5}})
    with pytest.raises(ModelFileError, match="normalization"):
        modelfile.read_engine(engine)
