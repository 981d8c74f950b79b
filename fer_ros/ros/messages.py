"""ROS messages <-> the library's data: the node's output messages and its input images.

The builders take a `MessageTypes`, a mapping of type names ("fer_ros/msg/FaceEmotion") to
message classes, so the same code fills the classes rosidl generates (the node, `rosidl_types`)
and the ones `rosbags` registers (bag replay and tests without ROS, `rosbags_types`). They pass
every field, copy the source image's header (never the current time) and convert numpy values
to the plain Python numbers rclpy insists on.
"""

import array
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..classes import UNKNOWN
from ..vision.align import crop_matrix
from ..vision.encodings import decode_compressed, image_to_bgr
from ..vision.faces import LANDMARKS, Face
from .circumplex import HRI_EXPRESSIONS, valence_arousal

#: every message type the builders use, by package
TYPE_NAMES = (
    "builtin_interfaces/msg/Time", "std_msgs/msg/Header", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
    "fer_ros/msg/FaceEmotion", "fer_ros/msg/FaceEmotionArray",
    "geometry_msgs/msg/Point", "geometry_msgs/msg/Quaternion", "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/PoseWithCovariance",
    "vision_msgs/msg/Point2D", "vision_msgs/msg/Pose2D", "vision_msgs/msg/BoundingBox2D",
    "vision_msgs/msg/ObjectHypothesis", "vision_msgs/msg/ObjectHypothesisWithPose",
    "vision_msgs/msg/Detection2D", "vision_msgs/msg/Detection2DArray",
    "hri_msgs/msg/IdsList", "hri_msgs/msg/Expression", "hri_msgs/msg/NormalizedRegionOfInterest2D",
    "hri_msgs/msg/NormalizedPointOfInterest2D", "hri_msgs/msg/FacialLandmarks",
    "diagnostic_msgs/msg/KeyValue", "diagnostic_msgs/msg/DiagnosticStatus", "diagnostic_msgs/msg/DiagnosticArray",
)

_PACKAGE = Path(__file__).resolve().parents[1]
#: where our own .msg files are: installed in the package (colcon, pip), or the source checkout's msg/
OWN_MSG_DIRS = (_PACKAGE / "interfaces" / "fer_ros" / "msg", _PACKAGE.parent / "msg")
#: packaged copies of the upstream vision_msgs and hri_msgs definitions (see interfaces/README.md)
UPSTREAM_MSG_DIR = _PACKAGE / "interfaces"
#: ROS4HRI (REP-155) topics: the tracked face ids, and per face id its sub-topics
HRI_TRACKED = "/humans/faces/tracked"
HRI_FACE = "/humans/faces/{}/{}"
HRI_EXPRESSION = "/humans/faces/{}/expression"
#: the per-face sub-topics fer_node publishes as a ROS4HRI face detector (rep155: true)
HRI_FACE_TOPICS = ("roi", "landmarks", "cropped", "aligned", "expression")
#: hri_msgs/FacialLandmarks index of each of `fer_ros.vision.faces.LANDMARKS` (YuNet's five points), as
#: hri_face_detect maps YuNet's: the eye on the image's left is the person's right pupil
HRI_LANDMARKS = {"right_eye": 68, "left_eye": 69, "nose": 30, "right_mouth": 48, "left_mouth": 54}
#: hri_msgs/FacialLandmarks holds this many points, one per landmark code
HRI_N_LANDMARKS = 70
#: rosbags type stores by ROS distribution
DISTROS = ("humble", "jazzy")
#: ROS4HRI face ids are this prefix + the track id (a ROS name token must not start with a digit)
FACE_ID_PREFIX = "fer"
#: rosidl_generator_py's array.array type codes for primitive sequences
_TYPE_CODES = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.uint8): "B"}


def rclpy_sequence(values: np.ndarray) -> array.array:
    """A primitive sequence as rosidl's Python classes hold it: array.array (they reject numpy arrays)."""
    values = np.ascontiguousarray(values)
    out = array.array(_TYPE_CODES[values.dtype])
    out.frombytes(values.tobytes())
    return out


@dataclass(frozen=True)
class MessageTypes:
    """Message classes by type name, and how their primitive sequences (float32[], uint8[]) are held."""

    classes: Mapping[str, type]
    sequence: Callable[[np.ndarray], Any]

    def __getitem__(self, name: str) -> type:
        try:
            return self.classes[name]
        except KeyError:
            raise KeyError(f"message type {name} is not in this MessageTypes mapping") from None


def rosidl_types() -> MessageTypes:
    """The classes rosidl generated (needs a sourced ROS 2 workspace with fer_ros built by colcon)."""
    classes = {}
    for name in TYPE_NAMES:
        package, _, cls = name.split("/")
        try:
            module = importlib.import_module(f"{package}.msg")
        except ImportError as e:
            where = getattr(importlib.import_module(package), "__file__", "?") if package == "fer_ros" else ""
            hint = (f" (the fer_ros found at {where} has no generated messages: build with colcon and "
                    "source install/setup.bash, and keep pip's fer_ros and the source tree off PYTHONPATH)"
                    if where else f" (install ros-$ROS_DISTRO-{package.replace('_', '-')})")
            raise ImportError(f"cannot import {package}.msg{hint}") from e
        classes[name] = getattr(module, cls)
    return MessageTypes(classes, rclpy_sequence)


def message_definitions() -> dict[str, str]:
    """Type name -> .msg text for our messages and the packaged vision_msgs / hri_msgs ones."""
    own = next((d for d in OWN_MSG_DIRS if d.is_dir()), None)
    if own is None:
        raise FileNotFoundError(f"fer_ros message definitions not found in {' or '.join(map(str, OWN_MSG_DIRS))}")
    files = [("fer_ros", p) for p in sorted(own.glob("*.msg"))]
    files += [(p.parent.parent.name, p) for p in sorted(UPSTREAM_MSG_DIR.glob("*/msg/*.msg"))]
    return {f"{package}/msg/{p.stem}": p.read_text(encoding="utf-8") for package, p in files}


def rosbags_typestore(distro: str = "humble", extra: Mapping[str, str] | None = None):
    """A rosbags Typestore of that distribution with fer_ros, vision_msgs and hri_msgs registered
    (the packaged definitions; `extra`: more type name -> .msg text, e.g. further hri_msgs types)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if distro not in DISTROS:
        raise ValueError(f"unknown ROS distribution {distro!r}; choose one of {', '.join(DISTROS)}")
    store = get_typestore(Stores.ROS2_HUMBLE if distro == "humble" else Stores.ROS2_JAZZY)
    types = {}
    for name, text in {**message_definitions(), **(extra or {})}.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def rosbags_types(typestore) -> MessageTypes:
    """MessageTypes of a rosbags Typestore (from `rosbags_typestore`): those of TYPE_NAMES it has (the packaged
    definitions cover every output but the REP-155 detector's roi and landmarks)."""
    return MessageTypes({name: typestore.types[name] for name in TYPE_NAMES if name in typestore.types},
                        np.ascontiguousarray)


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def header(types: Mapping, ns: int, frame_id: str):
    """A std_msgs/Header stamped `ns` nanoseconds (bags and replay; the node copies the image's)."""
    time = types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def face_id(track_id: int) -> str:
    """The ROS4HRI face id of a track."""
    return f"{FACE_ID_PREFIX}{int(track_id)}"


def _floats(types: MessageTypes, values: np.ndarray):
    return types.sequence(np.asarray(values, dtype=np.float32))


def face_array(types: MessageTypes, result, header, image_size: tuple[int, int]):
    """fer_ros/FaceEmotionArray of a FrameResult; image_size = (width, height) of the source image."""
    face_cls = types["fer_ros/msg/FaceEmotion"]
    faces = [face_cls(track_id=int(f.track_id), x=float(f.box[0]), y=float(f.box[1]), width=float(f.box[2]),
                      height=float(f.box[3]), detection_score=float(f.score), label=str(f.label),
                      confidence=float(f.confidence), probabilities=_floats(types, f.probs),
                      raw_probabilities=_floats(types, f.raw_probs), carried=bool(getattr(f, "carried", False)))
             for f in sorted(result.faces, key=lambda f: f.track_id)]
    return types["fer_ros/msg/FaceEmotionArray"](header=header, image_width=int(image_size[0]),
                                                 image_height=int(image_size[1]), classes=list(result.classes),
                                                 faces=faces)


def detections(types: MessageTypes, result, header):
    """vision_msgs/Detection2DArray: one detection per face, all class scores best first, track id in `id`."""
    point, quaternion = types["geometry_msgs/msg/Point"], types["geometry_msgs/msg/Quaternion"]
    pose, pose_cov = types["geometry_msgs/msg/Pose"], types["geometry_msgs/msg/PoseWithCovariance"]
    hypothesis, with_pose = types["vision_msgs/msg/ObjectHypothesis"], types["vision_msgs/msg/ObjectHypothesisWithPose"]
    out = []
    for f in sorted(result.faces, key=lambda f: f.track_id):
        x, y, w, h = (float(v) for v in f.box)
        order = np.argsort(-np.asarray(f.probs), kind="stable")
        results = [with_pose(hypothesis=hypothesis(class_id=result.classes[i], score=float(f.probs[i])),
                             pose=pose_cov(pose=pose(position=point(x=x + w / 2, y=y + h / 2, z=0.0),
                                                     orientation=quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
                                           covariance=np.zeros(36)))
                   for i in order]
        center = types["vision_msgs/msg/Pose2D"](position=types["vision_msgs/msg/Point2D"](x=x + w / 2, y=y + h / 2),
                                                 theta=0.0)
        out.append(types["vision_msgs/msg/Detection2D"](
            header=header, results=results, bbox=types["vision_msgs/msg/BoundingBox2D"](center=center, size_x=w,
                                                                                        size_y=h),
            id=str(int(f.track_id))))
    return types["vision_msgs/msg/Detection2DArray"](header=header, detections=out)


def tracked_ids(types: MessageTypes, ids: list[str], header):
    """hri_msgs/IdsList for /humans/faces/tracked."""
    return types["hri_msgs/msg/IdsList"](header=header, ids=list(ids))


def expressions(types: MessageTypes, result, header) -> dict[str, Any]:
    """ROS4HRI face id -> hri_msgs/Expression for /humans/faces/<id>/expression.

    `expression` is the hri_msgs constant of the label ("" when unknown: the face is then described
    by valence/arousal alone); valence/arousal are the circumplex mean of the smoothed probabilities.
    """
    return {face_id(f.track_id): expression(types, result.classes, f.probs, f.label, f.confidence, header)
            for f in result.faces}


def expression(types: MessageTypes, classes, probs, label: str, confidence: float, header):
    """hri_msgs/Expression of one face's smoothed probabilities (see `expressions`)."""
    valence, arousal = valence_arousal(classes, probs)
    name = "" if label == UNKNOWN else HRI_EXPRESSIONS.get(label, "")
    return types["hri_msgs/msg/Expression"](header=header, expression=name, valence=valence, arousal=arousal,
                                            confidence=float(confidence))


def _unit(value: float) -> float:
    return float(min(max(value, 0.0), 1.0))


def roi(types: MessageTypes, box, score: float, image_size: tuple[int, int], header):
    """hri_msgs/NormalizedRegionOfInterest2D of an (x, y, w, h) pixel box: corners as fractions of the image
    (width, height) = image_size, clipped to [0, 1]; c = the detector's score."""
    x, y, w, h = (float(v) for v in box)
    width, height = (float(max(v, 1)) for v in image_size)
    return types["hri_msgs/msg/NormalizedRegionOfInterest2D"](
        header=header, xmin=_unit(x / width), ymin=_unit(y / height), xmax=_unit((x + w) / width),
        ymax=_unit((y + h) / height), c=_unit(score))


def facial_landmarks(types: MessageTypes, points, score: float, image_size: tuple[int, int], header):
    """hri_msgs/FacialLandmarks of a face's (5, 2) pixel landmarks in `fer_ros.vision.faces.LANDMARKS` order (NaN rows
    unknown), or None when none is known. Known points sit at their hri_msgs index (`HRI_LANDMARKS`) as
    fractions of the image with c = the detector's score; the other 65 (and unknown ones) are 0, 0 with c = 0,
    as hri_face_detect leaves the points YuNet does not give."""
    if points is None:
        return None
    points = np.asarray(points, np.float64).reshape(-1, 2)
    known = ~np.isnan(points).any(axis=1)
    if not known.any():
        return None
    point_cls = types["hri_msgs/msg/NormalizedPointOfInterest2D"]
    width, height = (int(max(v, 1)) for v in image_size)
    marks = [point_cls(x=0.0, y=0.0, c=0.0) for _ in range(HRI_N_LANDMARKS)]
    for name, (x, y), ok in zip(LANDMARKS, points, known, strict=False):
        if ok:
            marks[HRI_LANDMARKS[name]] = point_cls(x=_unit(x / width), y=_unit(y / height), c=_unit(score))
    return types["hri_msgs/msg/FacialLandmarks"](header=header, landmarks=marks, height=height, width=width)


def cropped_face(bgr: np.ndarray, box, size: int = 128) -> np.ndarray:
    """REP-155 /cropped image: the face box scaled to fit (size, size), centred and 0-padded (as hri_face_detect)."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(bgr.shape[1], int(round(x + w))), min(bgr.shape[0], int(round(y + h)))
    out = np.zeros((size, size, 3), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    part = bgr[y0:y1, x0:x1]
    if part.ndim == 2:
        part = cv2.cvtColor(part, cv2.COLOR_GRAY2BGR)
    scale = size / max(part.shape[:2])
    new_w, new_h = max(1, min(size, round(part.shape[1] * scale))), max(1, min(size, round(part.shape[0] * scale)))
    scaled = cv2.resize(part, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = scaled
    return out


def aligned_face(bgr: np.ndarray, face, size: int = 128) -> np.ndarray:
    """REP-155 /aligned image: the face as the classifier sees it (eyes level where landmarks are known, framed
    like FER2013, `fer_ros.vision.align`) in colour, (size, size) bgr8. `face` has box and landmarks (a FaceResult)."""
    m = crop_matrix(Face(np.asarray(face.box, np.float32), float(face.score), face.landmarks)) * size
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return cv2.warpAffine(bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def image(types: MessageTypes, bgr: np.ndarray, header):
    """sensor_msgs/Image (bgr8) of a BGR uint8 array."""
    height, width = bgr.shape[:2]
    return types["sensor_msgs/msg/Image"](header=header, height=int(height), width=int(width), encoding="bgr8",
                                          is_bigendian=0, step=int(width * 3),
                                          data=types.sequence(np.ascontiguousarray(bgr, dtype=np.uint8).reshape(-1)))


def diagnostics(types: MessageTypes, header, name: str, hardware_id: str, level: str, message: str,
                values: Mapping[str, object]):
    """diagnostic_msgs/DiagnosticArray with one status; level is "OK", "WARN", "ERROR" or "STALE"."""
    status_cls, key_value = types["diagnostic_msgs/msg/DiagnosticStatus"], types["diagnostic_msgs/msg/KeyValue"]
    status = status_cls(level=getattr(status_cls, level), name=name, message=message, hardware_id=hardware_id,
                        values=[key_value(key=str(k), value=str(v)) for k, v in values.items()])
    return types["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=[status])


def bgr_from_msg(msg) -> np.ndarray:
    """BGR uint8 image of a sensor_msgs/Image or CompressedImage (rclpy or rosbags); ImageError if bad."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if hasattr(msg, "format"):
        return decode_compressed(data)
    return image_to_bgr(data, msg.encoding, int(msg.width), int(msg.height), int(msg.step),
                        big_endian=bool(msg.is_bigendian))
