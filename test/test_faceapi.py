"""face-api.js FaceExpressionNet rebuilt in PyTorch: the tfjs weight loader, class order, padding, teacher input.

The tests with the real weights run when FACEAPI_WEIGHTS names a folder holding
face_expression_model-weights_manifest.json and its shard (a face-api.js checkout's weights/).
"""

import functools
import http.server
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED, need

torch = pytest.importorskip("torch", reason="the face-api.js teacher is a PyTorch module")

from fer_ros.classes import FER7  # noqa: E402
from fer_ros.learning import checkpoint, faceapi  # noqa: E402
from fer_ros.learning.models import ARCHS, build_model  # noqa: E402
from fer_ros.preprocess import model_input, to_input  # noqa: E402

CKPLUS = SHARED / "data" / "ckplus48_dev"
#: face-api.js 0.22.2 (tfjs-core 1.7.0, cpu backend) on these crops enlarged bilinearly to 112x112, in FER7 order
FACEAPI_JS = {
    "anger/S022_005_00000031.png": (0.993480, 0.000000, 0.000000, 0.000000, 0.001831, 0.000111, 0.004578),
    "fear/S011_003_00000012.png": (0.000001, 0.000001, 0.000198, 0.001248, 0.965683, 0.000031, 0.032837),
    "surprise/S032_001_00000020.png": (0.000148, 0.000001, 0.998982, 0.000000, 0.000000, 0.000766, 0.000103),
}


def tfjs_weights(rng) -> dict[str, np.ndarray]:
    """Random weights under face-api.js's names and tfjs layouts (HWIO filters, (in, out) dense)."""
    w = {}
    for b, (cin, cout) in enumerate([(3, 32), (32, 64), (64, 128), (128, 256)]):
        for j in range(4):
            p, c = f"dense{b}/conv{j}", cin if j == 0 else cout
            if b == 0 and j == 0:
                w[f"{p}/filters"] = rng.normal(0, 0.3, (3, 3, 3, 32))
            else:
                w[f"{p}/depthwise_filter"] = rng.normal(0, 0.3, (3, 3, c, 1))
                w[f"{p}/pointwise_filter"] = rng.normal(0, 1 / np.sqrt(c), (1, 1, c, cout))
            w[f"{p}/bias"] = rng.normal(0, 0.1, cout)
    w["fc/weights"] = rng.normal(0, 0.1, (256, 7))
    w["fc/bias"] = rng.normal(0, 0.1, 7)
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_tfjs(folder: Path, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write weights as a tfjs manifest + two shards (filters uint8-, some uint16-, fc float16-quantized);
    returns the values a tfjs loader decodes."""
    entries, chunks, decoded = [], [], {}
    for i, (name, v) in enumerate(weights.items()):
        entry = {"name": name, "shape": list(v.shape), "dtype": "float32"}
        if name == "fc/weights":
            entry["quantization"] = {"dtype": "float16"}
            data = v.astype(np.float16)
            decoded[name] = data.astype(np.float32)
        elif name.endswith("filter") or name.endswith("filters"):
            qtype = np.uint16 if i % 3 == 0 else np.uint8
            lo, scale = float(v.min()), float(v.max() - v.min()) / np.iinfo(qtype).max
            data = np.round((v - lo) / scale).astype(qtype)
            entry["quantization"] = {"dtype": np.dtype(qtype).name, "scale": scale, "min": lo}
            decoded[name] = (data * scale + lo).astype(np.float32)
        else:
            data = decoded[name] = v
        entries.append(entry)
        chunks.append(data.tobytes())
    blob = b"".join(chunks)
    half = len(blob) // 2 + 1
    (folder / "m-shard1").write_bytes(blob[:half])
    (folder / "m-shard2").write_bytes(blob[half:])
    manifest = [{"paths": ["m-shard1", "m-shard2"], "weights": entries}]
    (folder / f"{faceapi.MODEL_NAME}-weights_manifest.json").write_text(json.dumps(manifest))
    return decoded


@pytest.fixture(scope="module")
def random_tfjs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faceapi_random")
    decoded = write_tfjs(folder, tfjs_weights(np.random.default_rng(0)))
    return folder, decoded


def test_loader_layouts_quantization_and_class_order(random_tfjs):
    folder, w = random_tfjs
    model = faceapi.load_weights(folder)
    sd = model.state_dict()
    assert torch.equal(sd["dense0.conv0.weight"], torch.from_numpy(w["dense0/conv0/filters"]).permute(3, 2, 0, 1))
    assert torch.equal(sd["dense2.conv1.depthwise.weight"][5, 0],
                       torch.from_numpy(w["dense2/conv1/depthwise_filter"][:, :, 5, 0]))
    assert torch.equal(sd["dense3.conv0.pointwise.weight"][:, :, 0, 0],
                       torch.from_numpy(w["dense3/conv0/pointwise_filter"][0, 0]).T)
    assert torch.equal(sd["dense1.conv3.pointwise.bias"], torch.from_numpy(w["dense1/conv3/bias"]))

    # output k is face-api.js's class named FER7[k]: recompute the logits from the pooled features
    pooled = []
    model.pool.register_forward_hook(lambda _m, _i, out: pooled.append(out.flatten(1)))
    with torch.no_grad():
        logits = model(torch.randn(3, 3, 112, 112)).numpy()
    faceapi_logits = pooled[0].numpy().astype(np.float64) @ w["fc/weights"] + w["fc/bias"]
    names = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
             "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
    for j, name in enumerate(faceapi.FACEAPI_CLASSES):
        np.testing.assert_allclose(logits[:, FER7.index(names[name])], faceapi_logits[:, j], rtol=1e-4, atol=1e-4)


def test_loader_rejects_other_nets(tmp_path):
    w = tfjs_weights(np.random.default_rng(1))
    w["extra/bias"] = w.pop("fc/bias")
    write_tfjs(tmp_path, w)
    with pytest.raises(ValueError, match="missing .*fc/bias.* unexpected .*extra/bias"):
        faceapi.load_weights(tmp_path)
    (tmp_path / "m-shard2").write_bytes(b"")
    with pytest.raises(ValueError, match="end before"):
        faceapi.load_weights(tmp_path)


def test_same_padding_is_tensorflows():
    """TF "same", stride 2, even size: pad one pixel at the bottom/right only (PyTorch's padding=1 differs)."""
    conv = faceapi.SameConv2d(1, 1, 3, 2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 2, 2] = 1
    with torch.no_grad():
        assert conv(x)[0, 0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
        assert faceapi.SameConv2d(1, 1, 3, 1)(torch.zeros(1, 1, 5, 5)).shape[-2:] == (5, 5)


def test_teacher_arch_and_checkpoint_roundtrip(random_tfjs, tmp_path):
    assert "faceapi_expression" not in ARCHS  # a teacher, not a choice for training configs
    assert isinstance(build_model("faceapi_expression", 7, 3), faceapi.FaceExpressionNet)
    model = faceapi.load_weights(random_tfjs[0])
    checkpoint.save(tmp_path / "t.pt", model, faceapi.metadata())
    loaded, meta = checkpoint.load_model(tmp_path / "t.pt")
    assert meta["arch"] == "faceapi_expression" and tuple(meta["classes"]) == FER7
    assert (meta["input_size"], meta["in_channels"]) == (112, 3)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_model_input_for_an_rgb_teacher():
    crops = np.random.default_rng(2).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    x = model_input(crops, faceapi.metadata())
    assert x.shape == (4, 3, 112, 112) and x.dtype == np.float32
    import cv2

    big = cv2.resize(crops[1], (112, 112), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    for c, mean in enumerate(faceapi.MEAN_RGB):
        np.testing.assert_allclose(x[1, c], (big - mean) / 255, atol=1e-6)
    ours = {"input_size": 48, "in_channels": 1, "normalization": {"mean": 0.0, "std": 255.0}}
    np.testing.assert_array_equal(model_input(crops, ours), to_input(crops))  # our models' input: unchanged


def test_distill_targets_feed_each_teacher_its_input(random_tfjs, tmp_path):
    from fer_ros.learning.data import Dataset
    from fer_ros.learning.train import TrainConfig, distill_targets

    model = faceapi.load_weights(random_tfjs[0])
    checkpoint.save(tmp_path / "t.pt", model, faceapi.metadata())
    crops = np.random.default_rng(3).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    data = Dataset(crops, np.array([0, 1, 2, 3, 4]), FER7, "random")
    got = distill_targets(TrainConfig(teacher=str(tmp_path / "t.pt"), distill_weight=1.0,
                                      distill_temperature=1.0), data)
    x = torch.from_numpy(model_input(crops, faceapi.metadata()))
    with torch.no_grad():
        want = (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(3)), 1)) / 2
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def _converter():
    spec = importlib.util.spec_from_file_location("faceapi_teacher", ROOT / "training" / "faceapi_teacher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_downloads_from_a_local_server(random_tfjs, tmp_path, monkeypatch):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    folder = random_tfjs[0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        convert = _converter()
        out = tmp_path / "t.pt"
        monkeypatch.setattr(sys, "argv", ["faceapi_teacher.py", "--weights", url, "--out", str(out)])
        with pytest.raises(ValueError, match="not face-api.js's published file"):
            convert.main()
        monkeypatch.setattr(sys, "argv", ["faceapi_teacher.py", "--weights", url, "--out", str(out), "--no-pin"])
        assert convert.main() == 0
    finally:
        server.shutdown()
    loaded, meta = checkpoint.load_model(out)
    assert meta["weights_from"] == url
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), faceapi.load_weights(folder)(x))


# ---- the real weights -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_net():
    folder = os.environ.get("FACEAPI_WEIGHTS")
    if not folder or not (Path(folder) / f"{faceapi.MODEL_NAME}-weights_manifest.json").is_file():
        pytest.skip("set FACEAPI_WEIGHTS to a folder with face-api.js's face_expression_model weights "
                    "(its repository's weights/) to test the real teacher")
    return Path(folder), faceapi.load_weights(folder)


def _ck(name: str) -> np.ndarray:
    import cv2

    return cv2.imread(str(need(CKPLUS / name)), cv2.IMREAD_GRAYSCALE)


def test_real_net_matches_face_api_js(real_net):
    names = list(FACEAPI_JS)
    x = torch.from_numpy(model_input(np.stack([_ck(n) for n in names]), faceapi.metadata()))
    with torch.no_grad():
        p = torch.softmax(real_net[1](x), 1).numpy()
    np.testing.assert_allclose(p, np.array([FACEAPI_JS[n] for n in names]), atol=2e-4)


@pytest.mark.parametrize("name", ["happy/S132_006_00000022.png", "disgust/S108_006_00000020.png",
                                  "sadness/S080_005_00000013.png", "surprise/S126_004_00000010.png"])
def test_real_net_classifies_ckplus_crops(real_net, name):
    x = torch.from_numpy(model_input(_ck(name)[None], faceapi.metadata()))
    with torch.no_grad():
        p = torch.softmax(real_net[1](x), 1)[0]
    assert abs(float(p.sum()) - 1) < 1e-5
    assert FER7[int(p.argmax())] == {"sadness": "sad"}.get(name.split("/")[0], name.split("/")[0])


def test_real_converter_checkpoint(real_net, tmp_path, monkeypatch):
    out = tmp_path / "faceapi.pt"
    monkeypatch.setattr(sys, "argv", ["faceapi_teacher.py", "--weights", str(real_net[0]), "--out", str(out)])
    assert _converter().main() == 0
    loaded, meta = checkpoint.load_model(out)
    assert meta["normalization"] == {"mean": list(faceapi.MEAN_RGB), "std": 255.0}
    x = torch.from_numpy(model_input(np.stack([_ck(n) for n in FACEAPI_JS]), meta))
    with torch.no_grad():
        assert torch.equal(loaded(x), real_net[1](x))
