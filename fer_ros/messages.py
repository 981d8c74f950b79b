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

import numpy as np

from .circumplex import HRI_EXPRESSIONS, valence_arousal
from .classes import UNKNOWN
from .encodings import decode_compressed, image_to_bgr

#: every message type the builders use, by package
TYPE_NAMES = (
    "builtin_interfaces/msg/Time", "std_msgs/msg/Header", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
    "fer_ros/msg/FaceEmotion", "fer_ros/msg/FaceEmotionArray",
    "geometry_msgs/msg/Point", "geometry_msgs/msg/Quaternion", "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/PoseWithCovariance",
    "vision_msgs/msg/Point2D", "vision_msgs/msg/Pose2D", "vision_msgs/msg/BoundingBox2D",
    "vision_msgs/msg/ObjectHypothesis", "vision_msgs/msg/ObjectHypothesisWithPose",
    "vision_msgs/msg/Detection2D", "vision_msgs/msg/Detection2DArray",
    "hri_msgs/msg/IdsList", "hri_msgs/msg/Expression",
    "diagnostic_msgs/msg/KeyValue", "diagnostic_msgs/msg/DiagnosticStatus", "diagnostic_msgs/msg/DiagnosticArray",
)

_HERE = Path(__file__).resolve().parent
#: where our own .msg files are: installed beside this module (colcon), or the source checkout's msg/
OWN_MSG_DIRS = (_HERE / "interfaces" / "fer_ros" / "msg", _HERE.parent / "msg")
#: packaged copies of the upstream vision_msgs and hri_msgs definitions (see interfaces/README.md)
UPSTREAM_MSG_DIR = _HERE / "interfaces"
#: rosbags type stores by ROS distribution
#: ROS4HRI (REP-155) topics: the tracked face ids, and one expression topic per face id
HRI_TRACKED = "/humans/faces/tracked"
HRI_EXPRESSION = "/humans/faces/{}/expression"
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


def rosbags_typestore(distro: str = "humble"):
    """A rosbags Typestore of that distribution with fer_ros, vision_msgs and hri_msgs registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if distro not in DISTROS:
        raise ValueError(f"unknown ROS distribution {distro!r}; choose one of {', '.join(DISTROS)}")
    store = get_typestore(Stores.ROS2_HUMBLE if distro == "humble" else Stores.ROS2_JAZZY)
    types = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def rosbags_types(typestore) -> MessageTypes:
    """MessageTypes of a rosbags Typestore (from `rosbags_typestore`)."""
    return MessageTypes({name: typestore.types[name] for name in TYPE_NAMES}, np.ascontiguousarray)


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
                      raw_probabilities=_floats(types, f.raw_probs))
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
    out = {}
    for f in result.faces:
        valence, arousal = valence_arousal(result.classes, f.probs)
        expression = "" if f.label == UNKNOWN else HRI_EXPRESSIONS.get(f.label, "")
        out[face_id(f.track_id)] = types["hri_msgs/msg/Expression"](
            header=header, expression=expression, valence=valence, arousal=arousal, confidence=float(f.confidence))
    return out


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
