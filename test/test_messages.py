"""Message contracts without ROS: our .msg files, the packaged upstream ones, and the message builders,
checked by serialising what they build to CDR with rosbags (Humble and Jazzy type stores) and reading it back."""

import array
import math
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from fer_ros.classes import FER7, UNKNOWN
from fer_ros.errors import ImageError
from fer_ros.pipeline import FaceResult, FrameResult
from fer_ros.ros import messages
from fer_ros.ros.circumplex import ANGLES, HRI_EXPRESSIONS, point, valence_arousal

rosbags_typesys = pytest.importorskip("rosbags.typesys", reason="rosbags is needed for the message contract tests")

ROOT = Path(__file__).resolve().parents[1]
MSG_FILES = sorted((ROOT / "msg").glob("*.msg"))

#: The hri_msgs types of the REP-155 detector outputs that the package does not carry, written here against
#: ros4hri/hri_msgs 2.0.0 (msg/NormalizedPointOfInterest2D.msg, NormalizedRegionOfInterest2D.msg,
#: FacialLandmarks.msg; Humble's 2.1.0 and Jazzy's 2.3.2 changed only LiveSpeech and Gesture, see
#: fer_ros/interfaces/README.md): every field, in order, and the landmark codes of the five points fer_ros
#: maps (HRI_LANDMARKS). Registered on top of the Humble and Jazzy type stores by the `store` fixture.
HRI_DETECTOR_MSGS = {
    "hri_msgs/msg/NormalizedPointOfInterest2D": "float32 x\nfloat32 y\nfloat32 c\n",
    "hri_msgs/msg/NormalizedRegionOfInterest2D":
        "std_msgs/Header header\nfloat32 xmin\nfloat32 ymin\nfloat32 xmax\nfloat32 ymax\nfloat32 c\n",
    "hri_msgs/msg/FacialLandmarks":
        "std_msgs/Header header\n"
        "uint8 NOSE=30\nuint8 MOUTH_OUTER_RIGHT=48\nuint8 MOUTH_OUTER_LEFT=54\nuint8 RIGHT_PUPIL=68\n"
        "uint8 LEFT_PUPIL=69\n"
        "NormalizedPointOfInterest2D[70] landmarks\nuint32 height\nuint32 width\n",
}


@pytest.fixture(scope="module", params=messages.DISTROS)
def store(request):
    return messages.rosbags_typestore(request.param, extra=HRI_DETECTOR_MSGS)


@pytest.fixture(scope="module")
def types(store):
    return messages.rosbags_types(store)


def _same(a, b, path="msg"):
    """Recursive equality of rosbags messages (numpy arrays compared by value)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a).__name__ == type(b).__name__, path
        for name in a.__dataclass_fields__:
            if not name.isupper() and name != "__msgtype__":
                _same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):  # float32 fields come back rounded to float32
        assert np.float32(a) == np.float32(b), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _roundtrip(store, msg):
    name = msg.__msgtype__
    back = store.deserialize_cdr(store.serialize_cdr(msg, name), name)
    _same(msg, back)
    return back


def _frame(n_faces: int = 2) -> FrameResult:
    rng = np.random.default_rng(0)
    faces = []
    for i in range(n_faces):
        raw = rng.dirichlet(np.ones(len(FER7))).astype(np.float32)
        probs = (0.5 * raw + 0.5 * np.eye(len(FER7), dtype=np.float32)[3 + i]).astype(np.float32)
        label = FER7[int(np.argmax(probs))] if i == 0 else UNKNOWN
        faces.append(FaceResult(track_id=7 - 4 * i, box=np.array([10.5 + 100 * i, 20.0, 64.0, 72.0], np.float32),
                                score=np.float32(0.9), label=label, confidence=float(probs.max()), probs=probs,
                                raw_probs=raw, landmarks=None))
    return FrameResult(stamp=1700000000.25, faces=faces, classes=FER7)


def test_every_msg_parses_and_documents_every_field(store):
    assert [p.name for p in MSG_FILES] == ["FaceEmotion.msg", "FaceEmotionArray.msg"]
    for path in MSG_FILES:
        text = path.read_text()
        types = rosbags_typesys.get_types_from_msg(text, f"fer_ros/msg/{path.stem}")
        assert f"fer_ros/msg/{path.stem}" in types
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.lstrip().startswith("#"):
                commented = "#" in line or (i > 0 and lines[i - 1].lstrip().startswith("#"))
                assert commented, f"{path.name}:{i + 1}: field without a comment: {line}"
    assert "fer_ros/msg/FaceEmotionArray" in store.types


def test_face_emotion_contract(store):
    def fields(name):
        cls = store.types[name]
        return [n for n in cls.__dataclass_fields__ if not n.isupper() and n != "__msgtype__"]

    assert fields("fer_ros/msg/FaceEmotionArray") == ["header", "image_width", "image_height", "classes", "faces"]
    assert fields("fer_ros/msg/FaceEmotion") == ["track_id", "x", "y", "width", "height", "detection_score",
                                                 "carried", "label", "confidence", "probabilities",
                                                 "raw_probabilities"]
    assert store.types["fer_ros/msg/FaceEmotion"].UNKNOWN == UNKNOWN


def test_upstream_definitions_are_the_humble_jazzy_ones(store):
    # vision_msgs 4.x: the box centre is vision_msgs/Pose2D with a Point2D position (3.x had geometry_msgs/Pose2D)
    center = store.types["vision_msgs/msg/BoundingBox2D"].__dataclass_fields__["center"]
    assert "vision_msgs__msg__Pose2D" in str(center.type)
    assert list(store.types["vision_msgs/msg/Pose2D"].__dataclass_fields__)[:2] == ["position", "theta"]
    expression = store.types["hri_msgs/msg/Expression"]
    constants = {getattr(expression, n) for n in dir(expression) if n.isupper()}
    assert set(HRI_EXPRESSIONS.values()) <= constants
    for name in ("expression", "valence", "arousal", "confidence", "header"):
        assert name in expression.__dataclass_fields__


def test_face_array_roundtrip_copies_the_header(store, types):
    result = _frame()
    header = messages.header(types, 1_700_000_000_250_000_000, "camera_optical")
    back = _roundtrip(store, messages.face_array(types, result, header, (640, 360)))
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (1700000000, 250000000,
                                                                                        "camera_optical")
    assert back.classes == list(FER7) and (back.image_width, back.image_height) == (640, 360)
    assert [f.track_id for f in back.faces] == [3, 7]  # sorted by track id
    seven = back.faces[1]
    assert (seven.x, seven.y, seven.width, seven.height) == (10.5, 20.0, 64.0, 72.0)
    assert seven.label == result.faces[0].label and back.faces[0].label == UNKNOWN
    np.testing.assert_allclose(seven.probabilities, result.faces[0].probs)
    np.testing.assert_allclose(seven.raw_probabilities, result.faces[0].raw_probs)
    assert seven.confidence == pytest.approx(result.faces[0].confidence)


def test_empty_frame_roundtrip(store, types):
    header = messages.header(types, 5_000_000_000, "c")
    back = _roundtrip(store, messages.face_array(types, FrameResult(5.0, [], FER7), header, (320, 240)))
    assert back.faces == [] and back.header.stamp.sec == 5


def test_detections_roundtrip(store, types):
    result = _frame()
    back = _roundtrip(store, messages.detections(types, result, messages.header(types, 2_500_000_000, "cam")))
    assert [d.id for d in back.detections] == ["3", "7"]
    det = back.detections[1]
    assert (det.bbox.center.position.x, det.bbox.center.position.y) == (42.5, 56.0)
    assert (det.bbox.size_x, det.bbox.size_y, det.bbox.center.theta) == (64.0, 72.0, 0.0)
    scores = [r.hypothesis.score for r in det.results]
    assert len(det.results) == len(FER7) and scores == sorted(scores, reverse=True)
    best = det.results[0].hypothesis
    assert best.class_id == FER7[int(np.argmax(result.faces[0].probs))]
    assert best.score == pytest.approx(float(result.faces[0].probs.max()))
    assert det.header.stamp.nanosec == 500000000


def test_rep155_messages_roundtrip(store, types):
    result = _frame()
    header = messages.header(types, 3_000_000_000, "cam")
    ids = [messages.face_id(f.track_id) for f in result.faces]
    assert ids == ["fer7", "fer3"] and all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)
    assert _roundtrip(store, messages.tracked_ids(types, sorted(ids), header)).ids == ["fer3", "fer7"]
    exprs = messages.expressions(types, result, header)
    assert set(exprs) == set(ids)
    known, unknown = _roundtrip(store, exprs["fer7"]), _roundtrip(store, exprs["fer3"])
    assert known.expression == HRI_EXPRESSIONS[result.faces[0].label]
    assert unknown.expression == ""  # not categorised: valence/arousal only
    valence, arousal = valence_arousal(FER7, result.faces[0].probs)
    assert known.valence == pytest.approx(valence, abs=1e-6) and known.arousal == pytest.approx(arousal, abs=1e-6)
    assert known.confidence == pytest.approx(result.faces[0].confidence)


def test_image_and_diagnostics_roundtrip(store, types):
    bgr = np.random.default_rng(1).integers(0, 255, (6, 8, 3), np.uint8)
    img = _roundtrip(store, messages.image(types, bgr, messages.header(types, 1_000_000_000, "cam")))
    assert (img.encoding, img.width, img.height, img.step) == ("bgr8", 8, 6, 24)
    np.testing.assert_array_equal(messages.bgr_from_msg(img), bgr)
    header = messages.header(types, 9_000_000_000, "")
    diag = _roundtrip(store, messages.diagnostics(types, header, "fer_node: fer", "/fer_node",
                                                  "WARN", "slow", {"latency_median_ms": "12.50", "frames_dropped": 3}))
    status = diag.status[0]
    assert status.level == store.types["diagnostic_msgs/msg/DiagnosticStatus"].WARN
    assert [(v.key, v.value) for v in status.values] == [("latency_median_ms", "12.50"), ("frames_dropped", "3")]


def test_bgr_from_msg_reads_raw_and_compressed(types, store):
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 255, (5, 7, 3), np.uint8)
    image_cls, header = types["sensor_msgs/msg/Image"], messages.header(types, 0, "c")
    rgb_padded = np.zeros((5, 7 * 3 + 3), np.uint8)
    rgb_padded[:, :21] = bgr[:, :, ::-1].reshape(5, 21)
    msg = image_cls(header=header, height=5, width=7, encoding="rgb8", is_bigendian=0, step=24,
                    data=rgb_padded.reshape(-1))
    np.testing.assert_array_equal(messages.bgr_from_msg(msg), bgr)
    ok, png = cv2.imencode(".png", bgr)
    compressed = types["sensor_msgs/msg/CompressedImage"](header=header, format="png", data=png.reshape(-1))
    np.testing.assert_array_equal(messages.bgr_from_msg(compressed), bgr)
    with pytest.raises(ImageError):
        messages.bgr_from_msg(types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                                        data=png.reshape(-1)[:20]))
    with pytest.raises(ImageError):
        messages.bgr_from_msg(image_cls(header=header, height=5, width=7, encoding="rgb8", is_bigendian=0, step=24,
                                        data=rgb_padded.reshape(-1)[:-5]))


def test_header_rounds_stamps():
    types = messages.rosbags_types(messages.rosbags_typestore("humble"))
    h = messages.header(types, 13_000_000_000, "x")
    assert (h.stamp.sec, h.stamp.nanosec) == (12, 999999999) or (h.stamp.sec, h.stamp.nanosec) == (13, 0)
    assert messages.stamp_seconds(messages.header(types, 4_125_000_000, "x").stamp) == 4.125


def test_rclpy_sequence_uses_rosidl_type_codes():
    f = messages.rclpy_sequence(np.array([0.25, 0.75], np.float32))
    assert isinstance(f, array.array) and f.typecode == "f" and list(f) == [0.25, 0.75]
    b = messages.rclpy_sequence(np.arange(4, dtype=np.uint8))
    assert b.typecode == "B" and bytes(b) == b"\x00\x01\x02\x03"
    assert messages.rclpy_sequence(np.zeros(0, np.float32)).tolist() == []


def test_missing_type_names_the_type():
    types = messages.MessageTypes({}, np.asarray)
    with pytest.raises(KeyError, match="fer_ros/msg/FaceEmotion"):
        types["fer_ros/msg/FaceEmotion"]
    with pytest.raises(ValueError, match="humble, jazzy"):
        messages.rosbags_typestore("iron")


def test_circumplex_points():
    assert point("neutral") == (0.0, 0.0)
    v, a = point("happy")
    assert v == pytest.approx(math.cos(math.radians(7.8))) and 0 < a < 0.2
    assert point("sad")[0] < 0 and point("sad")[1] < 0
    assert point("angry")[1] > 0.9 and point("fear")[0] < 0 < point("fear")[1]
    assert set(FER7) <= set(ANGLES) and set(FER7) <= set(HRI_EXPRESSIONS)
    probs = np.zeros(len(FER7), np.float32)
    probs[FER7.index("happy")] = probs[FER7.index("neutral")] = 0.5
    v, a = valence_arousal(FER7, probs)
    assert v == pytest.approx(point("happy")[0] / 2) and a == pytest.approx(point("happy")[1] / 2)
    assert valence_arousal(FER7, np.full(7, 1 / 7)) != (0.0, 0.0)


def _faces_with_landmarks():
    result = _frame()
    eyes_only = np.full((5, 2), np.nan, np.float32)
    eyes_only[:2] = [[30.0, 40.0], [60.0, 41.0]]
    result.faces[0].landmarks = eyes_only  # Haar + eye cascade: the eyes only
    result.faces[1].landmarks = np.array([[130, 45], [160, 44], [145, 60], [132, 75], [158, 76]], np.float32)
    result.faces[1].carried = True
    return result


def test_carried_roundtrip(store, types):
    result = _faces_with_landmarks()
    back = _roundtrip(store, messages.face_array(types, result, messages.header(types, 0, "c"), (640, 360)))
    assert [(f.track_id, f.carried) for f in back.faces] == [(3, True), (7, False)]
    # a face result without the field (an older pipeline's) reads as not carried
    uniform = np.full(7, 1 / 7, np.float32)
    plain = SimpleNamespace(track_id=1, box=np.array([0, 0, 40, 40], np.float32), score=0.9, label="happy",
                            confidence=0.9, probs=uniform, raw_probs=uniform)
    msg = messages.face_array(types, FrameResult(0.0, [plain], FER7), messages.header(types, 0, "c"), (64, 64))
    assert msg.faces[0].carried is False


def test_rep155_detector_messages_roundtrip(store, types):
    result = _faces_with_landmarks()
    header = messages.header(types, 3_000_000_000, "cam")
    face = result.faces[0]  # box 10.5, 20, 64 x 72 in a 640 x 360 image
    roi = _roundtrip(store, messages.roi(types, face.box, face.score, (640, 360), header))
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx((10.5 / 640, 20 / 360, 74.5 / 640, 92 / 360))
    assert roi.c == pytest.approx(0.9) and roi.header.frame_id == "cam"
    clipped = messages.roi(types, [-10.0, 300.0, 100.0, 100.0], 1.5, (640, 360), header)
    assert (clipped.xmin, clipped.ymax, clipped.c) == (0.0, 1.0, 1.0)

    cls = store.types["hri_msgs/msg/FacialLandmarks"]
    assert {name: getattr(cls, code) for name, code in [("right_eye", "RIGHT_PUPIL"), ("left_eye", "LEFT_PUPIL"),
                                                         ("nose", "NOSE"), ("right_mouth", "MOUTH_OUTER_RIGHT"),
                                                         ("left_mouth", "MOUTH_OUTER_LEFT")]} == messages.HRI_LANDMARKS
    marks = _roundtrip(store, messages.facial_landmarks(types, face.landmarks, face.score, (640, 360), header))
    assert len(marks.landmarks) == messages.HRI_N_LANDMARKS and (marks.width, marks.height) == (640, 360)
    right = marks.landmarks[cls.RIGHT_PUPIL]
    assert (right.x, right.y, right.c) == pytest.approx((30 / 640, 40 / 360, 0.9))
    assert [i for i, m in enumerate(marks.landmarks) if m.c > 0] == [cls.RIGHT_PUPIL, cls.LEFT_PUPIL]
    full = messages.facial_landmarks(types, result.faces[1].landmarks, 0.8, (640, 360), header)
    assert sorted(i for i, m in enumerate(full.landmarks) if m.c > 0) == sorted(messages.HRI_LANDMARKS.values())
    assert messages.facial_landmarks(types, None, 0.9, (640, 360), header) is None
    assert messages.facial_landmarks(types, np.full((5, 2), np.nan), 0.9, (640, 360), header) is None


def test_rep155_face_images():
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (360, 640, 3), np.uint8)
    cropped = messages.cropped_face(bgr, [100.0, 50.0, 64.0, 128.0], 128)  # a tall box: padded left and right
    assert cropped.shape == (128, 128, 3) and cropped.dtype == np.uint8
    assert cropped[:, :32].max() == 0 and cropped[:, 96:].max() == 0 and cropped[:, 40:88].min() >= 0
    np.testing.assert_array_equal(messages.cropped_face(bgr, [0, 0, 128, 128], 128), bgr[:128, :128])
    assert messages.cropped_face(bgr, [700, 50, 10, 10], 64).max() == 0  # outside the image
    face = FaceResult(1, np.array([200, 100, 96, 96], np.float32), 0.9, "happy", 0.9, np.ones(7), np.ones(7))
    aligned = messages.aligned_face(bgr, face, 128)
    assert aligned.shape == (128, 128, 3) and aligned.dtype == np.uint8
    level = np.full((360, 640, 3), 128, np.uint8)
    level[100:196, 200:296] = 250
    assert messages.aligned_face(level, face, 96)[10:86, 10:86].min() == 250  # the box fills the aligned image


def test_expression_of_one_face(types, store):
    probs = np.eye(len(FER7), dtype=np.float32)[FER7.index("surprise")]
    msg = _roundtrip(store, messages.expression(types, FER7, probs, "surprise", 1.0,
                                                messages.header(types, 0, "")))
    assert msg.expression == "surprised" and msg.valence == pytest.approx(point("surprise")[0], abs=1e-6)
