"""The shipped models: they load without torch, describe themselves and do what MODEL_CARD.md says."""

import re

import cv2
import numpy as np
import pytest
from conftest import FACES, FER2013, ROOT, YUNET, need

from fer_ros.classes import FER7
from fer_ros.config import load_config
from fer_ros.inference import DEFAULT_MODEL, SHIPPED, load_backend
from fer_ros.pipeline import Pipeline

# the labelled photos of ../shared/samples/faces and their expression
PHOTOS = {"angry_black": "angry", "happy_black": "happy", "sad_asian": "sad", "surprise_white": "surprise",
          "0-f1-su-ph": "surprise", "0-f15-hao-ph": "happy", "15-f13-anc-ph": "angry", "45-m7-di-ph": "disgust"}


def card_metric(name: str) -> dict:
    """The evaluate figures MODEL_CARD.md records for a shipped model (a machine-readable comment)."""
    text = (ROOT / "MODEL_CARD.md").read_text()
    m = re.search(rf"<!-- evaluate {name}: (.*?) -->", text)
    assert m, f"MODEL_CARD.md has no evaluate line for {name}"
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def test_default_model_describes_itself_and_what_it_learnt_from():
    backend = load_backend()
    assert backend.path == DEFAULT_MODEL == SHIPPED["mix"] and backend.classes == FER7 and backend.input_size == 48
    meta = backend.metadata
    assert meta["arch"] == "arch1" and meta["params"]["trainable"] == 292_863
    sources = {s["name"]: s for s in meta["data"]["sources"]}
    assert {"fer2013", "taiwan:train", "sfew_train:train", "emil_colour:all", "utkface_unlabelled"} <= set(sources)
    assert sources["utkface_unlabelled"]["targets"] == "soft" and meta["prior_correction"]["tau"] == 0.5
    mixed = meta["interpolation"]  # 0.75 x fer2013_arch1 + 0.25 x the mixture's model (MODEL_CARD)
    assert mixed["alpha"] == 0.25 and mixed["from"][0].endswith("fer2013_arch1.pt")
    assert 0.68 < meta["metrics"]["val_accuracy"] < 0.70
    assert DEFAULT_MODEL.stat().st_size < 1.3e6


def test_fer2013_model_by_name():
    backend = load_backend("fer2013")
    assert backend.classes == FER7 and backend.metadata["params"]["trainable"] == 292_863
    meta = backend.metadata
    assert meta["data"]["train"] == "fer2013.csv.gz:Training" and meta["config"]["optimizer"] == "sgd"
    assert 0.69 < meta["metrics"]["val_accuracy"] < 0.70


def test_ferplus_model_by_name():
    if not SHIPPED["ferplus"].is_file():
        pytest.skip("the FER+ model is not shipped")
    backend = load_backend("ferplus")
    assert backend.classes == FER7 + ("contempt",) and backend.metadata["config"]["soft_labels"]


def test_checkpoint_and_onnx_agree():
    pytest.importorskip("torch", reason="the torch backend needs torch")
    x = np.random.default_rng(0).random((16, 1, 48, 48), dtype=np.float32)
    onnx = load_backend().predict(x)
    torch_ = load_backend(DEFAULT_MODEL.with_suffix(".pt"), "torch").predict(x)
    assert np.abs(onnx - torch_).max() <= 1e-4


def test_labelled_photos_through_the_full_pipeline():
    pipeline = Pipeline(load_config(detector="yunet", detector_model=str(need(YUNET)), track_min_hits=1))
    right = {}
    for name, label in PHOTOS.items():
        pipeline.reset()
        faces = pipeline.process(cv2.imread(str(need(FACES / f"{name}.jpg"))), 0.0).faces
        assert len(faces) == 1, name
        right[name] = FER7[int(np.argmax(faces[0].probs))] == label
    assert all(right[n] for n in ("happy_black", "sad_asian", "surprise_white", "0-f1-su-ph", "0-f15-hao-ph"))
    assert sum(right.values()) >= 6, right


@pytest.mark.parametrize("name,model,zoom", [("mix", None, 1.0), ("fer2013", "fer2013", 1.0),
                                             ("fer2013-zoom", "fer2013", 1.1)])
def test_model_card_accuracy_is_reproduced_by_evaluate(name, model, zoom):
    from fer_ros.learning.evaluate import evaluate

    card = card_metric(name)
    report = evaluate(model, str(need(FER2013)), "PublicTest", flip=True, zoom=zoom, progress=False)
    assert report["n"] == 3589
    assert report["accuracy"] == pytest.approx(card["accuracy"], abs=5e-4)
    assert report["macro_f1"] == pytest.approx(card["macro_f1"], abs=5e-4)


def test_ferplus_card_accuracy_is_reproduced_on_ferplus_labels():
    from conftest import FERPLUS

    from fer_ros.learning.evaluate import evaluate

    if not SHIPPED["ferplus"].is_file():
        pytest.skip("the FER+ model is not shipped")
    card = card_metric("ferplus")
    report = evaluate("ferplus", str(need(FERPLUS)), "PublicTest", pixels=str(need(FER2013)), flip=True,
                      progress=False)
    assert report["n"] == 3579 and report["skipped"] == {"not a face": 10}
    assert report["accuracy"] == pytest.approx(card["accuracy"], abs=5e-4)
    assert report["macro_f1"] == pytest.approx(card["macro_f1"], abs=5e-4)
