"""The face pipeline end to end with real detectors and a real ONNX Runtime session; its configuration."""

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from conftest import FACES, ROOT, VIDEOS, YUNET, need

from fer_ros.config import FIELDS, ConfigError, PipelineConfig, load_config, validate
from fer_ros.errors import ImageError
from fer_ros.inference import load_backend
from fer_ros.pipeline import Pipeline


@pytest.fixture()
def backend(onnx_model):
    """The real backend, recording the batch size of every `predict` call in `.batches`."""
    backend = load_backend(onnx_model)
    backend.batches, predict = [], backend.predict

    def counting(batch):
        backend.batches.append(len(batch))
        return predict(batch)

    backend.predict = counting
    return backend


def frames(name: str, step: int = 1):
    cap = cv2.VideoCapture(str(need(VIDEOS / name)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        if i % step == 0:
            yield i / fps, frame
        i += 1


@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_one_stable_id_through_a_clip(backend, detector):
    config = load_config(detector=detector, detector_model=str(need(YUNET)) if detector == "yunet" else None)
    pipeline = Pipeline(config, backend)
    ids = [[f.track_id for f in pipeline.process(frame, stamp).faces] for stamp, frame in
           frames("pyfeat_single_face.mp4", step=2)]  # 15 fps keeps the test quick
    assert len(ids) == 36
    assert ids[0] == [], "a new face is confirmed after track_min_hits=2 frames"
    assert sum(i == [1] for i in ids) >= 0.95 * len(ids), ids


def test_batched_classification_and_results(backend):
    pipeline = Pipeline(load_config(detector="yunet", detector_model=str(need(YUNET)), track_min_hits=1), backend)
    image = cv2.imread(str(need(FACES / "multi_face.jpg")))
    result = pipeline.process(image, 12.5)
    assert backend.batches == [10], "all faces of a frame and their mirror images go to the model in one batch"
    assert len(result.faces) == 5 and sorted(f.track_id for f in result.faces) == [1, 2, 3, 4, 5]
    assert result.stamp == 12.5 and result.classes == backend.classes and result.n_small == 0
    assert set(result.timings) == {"detect", "align", "classify", "track", "total"}
    assert result.timings["total"] >= result.timings["detect"] + result.timings["classify"]
    for f in result.faces:
        assert f.probs.shape == (7,) and f.probs.sum() == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(f.probs, f.raw_probs)  # first sight: nothing to smooth yet
        assert f.label in backend.classes + ("unknown",) and f.landmarks.shape == (5, 2)
    d = result.to_dict()
    assert set(d["faces"][0]) >= {"id", "box", "label", "confidence", "probabilities"}
    assert list(d["faces"][0]["probabilities"]) == list(backend.classes)


def test_between_whole_frame_scans_haar_looks_near_tracks(backend):
    image = cv2.imread(str(need(FACES / "single_face.jpg")))
    pipeline = Pipeline(load_config(detection_period_s=0.5, track_min_hits=1), backend)
    runs = [pipeline.process(image, t) for t in (0.0, 0.1, 0.2, 0.7, 0.3, 0.3)]
    assert [r.full_scan for r in runs] == [True, False, False, True, True, True], "a stamp not after the scan rescans"
    assert all([f.track_id for f in r.faces] == [1] for r in runs)
    moved = np.zeros_like(image)
    moved[:, 30:] = image[:, :-30]  # the face moves 30 px: found near its track
    near = pipeline.process(moved, 0.4)
    assert not near.full_scan and [f.track_id for f in near.faces] == [1]
    assert near.faces[0].box[0] == pytest.approx(runs[-1].faces[0].box[0] + 30, abs=8)
    gone = pipeline.process(np.zeros_like(image), 0.5)  # a black frame is another scene: tracks end, whole scan
    assert gone.scene_cut and gone.full_scan and gone.faces == []


def test_small_faces_are_counted_not_classified(backend):
    pipeline = Pipeline(load_config(min_face_size=4000, track_min_hits=1), backend)
    result = pipeline.process(cv2.imread(str(need(FACES / "single_face.jpg"))), 0.0)
    assert result.faces == [] and result.n_small == 1 and backend.batches == []


def test_unknown_below_threshold_and_smoothing(backend):
    image = cv2.imread(str(need(FACES / "single_face.jpg")))
    pipeline = Pipeline(load_config(track_min_hits=1, confidence_threshold=1.0), backend)
    face = pipeline.process(image, 0.0).faces[0]
    assert face.label == "unknown" and face.confidence < 1.0
    pipeline.update_config(confidence_threshold=0.0)
    face = pipeline.process(image, 0.1).faces[0]
    assert face.label == backend.classes[int(np.argmax(face.probs))]
    # a different frame changes the raw probabilities; the smoothed ones lag behind
    pipeline.update_config(smoothing_tau_s=1.0)
    before = face.probs
    face = pipeline.process(cv2.flip(image, 1), 0.2).faces[0]
    alpha = 1 - np.exp(-0.1 / 1.0)
    np.testing.assert_allclose(face.probs, (1 - alpha) * before + alpha * face.raw_probs, atol=1e-5)
    pipeline.reset()
    assert pipeline.process(image, 0.3).faces[0].track_id == 1


def test_update_config(backend):
    pipeline = Pipeline(load_config(), backend)
    pipeline.update_config(detector="yunet", detector_model=str(need(YUNET)), track_max_missed=9)
    assert pipeline.detector.name == "yunet" and pipeline.tracker.max_missed == 9
    with pytest.raises(ConfigError, match="backend cannot change while running"):
        pipeline.update_config(backend="torch")
    with pytest.raises(ConfigError, match="margin must be within"):
        pipeline.update_config(track_iou=0.5, margin=3.0)
    assert pipeline.config.track_iou == 0.3, "a rejected change leaves every parameter as it was"
    pipeline.update_config(model="")  # unchanged static parameter ("" = None) is accepted


def test_bad_frames(backend):
    pipeline = Pipeline(load_config(), backend)
    for bad in (np.zeros((0, 10, 3), np.uint8), np.zeros((8, 8, 3), np.float64), "image"):
        with pytest.raises(ImageError):
            pipeline.process(bad, 0.0)


def test_runtime_path_never_imports_torch(onnx_model):
    script = textwrap.dedent(f"""
        import sys, numpy as np, cv2
        from fer_ros.pipeline import Pipeline
        from fer_ros.config import load_config
        from fer_ros.vision.annotate import annotate
        from fer_ros.vision.encodings import image_to_bgr
        p = Pipeline(load_config(model={str(onnx_model)!r}, track_min_hits=1))
        image = cv2.imread({str(need(FACES / 'single_face.jpg'))!r})
        r = p.process(image_to_bgr(image.tobytes(), "bgr8", image.shape[1], image.shape[0]), 0.0)
        annotate(image, r)
        assert len(r.faces) == 1
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"torch was imported: {out.stdout}"


def test_frame_bench_measures_every_stage(backend):
    from fer_ros.bench.frame import letterbox, measure

    frame = letterbox(cv2.imread(str(need(FACES / "multi_face.jpg"))))
    assert frame.shape == (480, 640, 3)
    row = measure(Pipeline(load_config(detector="yunet", detector_model=str(need(YUNET))), backend), frame, 3, 1)
    assert row["faces"] == 5 and backend.batches[-1] == 10  # 5 faces and their mirror images
    assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"] and row["cpu_ms"] > 0
    assert all(row[f"{k}_ms"] > 0 for k in ("detect", "align", "classify", "track"))


# ---- configuration ---------------------------------------------------------------------------------

def test_every_field_describes_itself():
    for name, f in FIELDS.items():
        assert f.metadata["description"] and isinstance(f.metadata["dynamic"], bool), name
        assert validate(name, getattr(PipelineConfig(), name)) is None


def test_shipped_parameters_file_loads():
    path = need(ROOT / "fer_ros" / "config" / "fer.yaml")
    assert load_config(path) == PipelineConfig(), "config/fer.yaml and the PipelineConfig defaults disagree"


def test_parameters_file_layouts(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("/**:\n  ros__parameters:\n    detector: yunet\n    margin: 0\n    image_topic: cam\n"
                 "/robot/fer_node:\n  ros__parameters:\n    qos_overrides:\n      /image:\n        subscription:\n"
                 "          depth: 1\n    track_min_hits: 4\n"
                 "camera_node:\n  ros__parameters:\n    device: cuda\n")
    c = load_config(p, detector_model="m.onnx")
    assert (c.detector, c.margin, c.track_min_hits, c.device, c.detector_model) == ("yunet", 0.0, 4, "cpu", "m.onnx")
    assert isinstance(c.margin, float)
    p.write_text("confidence_threshold: 0.7\n")  # a plain mapping works too
    assert load_config(p).confidence_threshold == 0.7


@pytest.mark.parametrize("text, message", [
    ("/**:\n  ros__parameters:\n    track_min_hits: 0\n", "track_min_hits must be within 1..100"),
    ("/**:\n  ros__parameters:\n    haar_eyes: 'yes'\n", "haar_eyes must be bool"),
    ("/**:\n  ros__parameters:\n    detector: [\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_parameters_files(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_bad_overrides_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="detector must be one of auto, yunet, haar"):
        load_config(detector="dlib")
    with pytest.raises(ConfigError, match="unknown parameter 'colour'"):
        load_config(colour=1)
    with pytest.raises(ConfigError, match="absent.yaml: cannot read"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("name", ["multi_face.jpg", "group/12_angry_men.jpg", "group/solvay_conference.jpg",
                                  "group/test_image.jpg", "portraits/girl1.jpg"])
def test_annotation_panels_cover_no_face_label_or_other_panel(backend, name):
    """Issue 20, on the group photos and a close-up made from a portrait: every panel is inside the image and
    overlaps no face, no label and no other panel; most faces get one; the summary counts in words."""
    from fer_ros.vision.annotate import _overlaps, _summary_text, annotate, layout

    image = cv2.imread(str(need(FACES / name)))
    pipeline = Pipeline(load_config(detector="haar"), backend)
    results = [pipeline.process_image(image)]
    if name.startswith("portraits"):  # a close-up: the face fills most of the frame
        x, y, w, h = (int(v) for v in results[0].faces[0].box)
        image = np.ascontiguousarray(image[max(0, y - h // 8):y + h + h // 8, max(0, x - w // 8):x + w + w // 8])
        results.append(pipeline.process_image(image))
    for result in results[-1:]:
        where = layout(result, image.shape)
        boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in result.faces)]
        panels = [p for p in where.panels if p is not None]
        for i, p in enumerate(panels):
            assert 0 <= p[0] < p[2] <= image.shape[1] and 0 <= p[1] < p[3] <= image.shape[0]
            assert not any(_overlaps(p, other) for other in boxes + where.labels + panels[:i] + [where.summary])
        if len(result.faces) > 2:
            assert len(panels) >= 0.5 * len(result.faces), (len(panels), len(result.faces))
        assert annotate(image, result).shape == image.shape
    n = len(results[0].faces)
    assert _summary_text(results[0]).startswith(f"{n} face{'s' if n != 1 else ''}")


def test_bench_tables_fit_100_columns_and_misses_say_by_how_much(capsys):
    from fer_ros.bench import print_table
    from fer_ros.bench.frame import _miss

    row = {"faces": 4, "median_ms": 18.3}
    assert _miss(row, 5) == "1 of 5 faces not found"
    assert _miss({"faces": 1, "median_ms": 18.8}, 1) == "median 18.8 ms is 3.8 ms over the 15 ms goal"
    wide = {"section": "frame", "case": "haar, 5 faces, whole frame every 0.2 s", "note": "n " * 80,
            **{f"stage_{i}_ms": 12.345 for i in range(14)}, "miss": _miss(row, 5)}
    print_table([wide, {**wide, "case": "yunet"}])
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 100 and "[frame] (1/" in lines[1]
    assert sum("stage_13_ms" in line for line in lines) == 1 and any("1 of 5 faces not found" in line for line in lines)
