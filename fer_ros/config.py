"""Every face-pipeline parameter in one dataclass, with the metadata the ROS node declares them with.

Each field's metadata holds "description", "dynamic" (may change while running, through
`Pipeline.update_config` or a ROS parameter set) and either "range": (lo, hi) or "choices".
`load_config` reads a ROS 2 parameters file (the packaged defaults, fer_ros/config/fer.yaml, without one);
the node's own keys (topics, ...) are known and skipped there, a key neither has is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FerRosError, FerRosWarning, read_yaml

#: the node whose section of a parameters file `load_config` reads (besides the "/**" wildcard)
NODE_NAME = "fer_node"


class ConfigError(FerRosError):
    """A parameter is unknown, of the wrong type or out of range."""


def _param(default, description: str, dynamic: bool = True, range=None, choices=None):
    meta = {"description": description, "dynamic": dynamic}
    if range is not None:
        meta["range"] = range
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass
class PipelineConfig:
    detector: str = _param("auto", "face detector: auto (yunet when its model file is found, else haar), yunet "
                                   "(a CNN: finds more faces, faster) or haar (built in)",
                           choices=("auto", "yunet", "haar"))
    detector_model: str | None = _param(None, "YuNet ONNX file (face_detection_yunet_2023mar.onnx); empty: "
                                              "$FER_ROS_YUNET_MODEL, else the one `fer-ros models fetch` downloads")
    detection_size: int = _param(320, "detect on a copy whose longer side is at most this many pixels (0 = full "
                                      "size); smaller is faster but misses small faces", range=(0, 4096))
    detection_score: float = _param(0.6, "YuNet: minimum face confidence (Haar: see haar_min_neighbors)",
                                    range=(0.0, 1.0))
    detection_period_s: float = _param(0.2, "scan the whole frame for new faces this often (s, by the image stamps); "
                                            "in between, Haar looks only near tracked faces, at each one's scale "
                                            "(0 = every frame; YuNet always scans the whole frame)",
                                       range=(0.0, 10.0))
    haar_scale_factor: float = _param(1.15, "Haar image pyramid step; larger is faster, finds fewer faces",
                                      range=(1.01, 2.0))
    haar_min_neighbors: int = _param(3, "Haar: overlapping raw detections needed for a face; larger, fewer false "
                                        "faces", range=(1, 20))
    haar_thorough: bool = _param(False, "Haar: whole-frame scans also look for half-profile faces and faces tilted "
                                        "25 degrees (about 5x the time; still images always do)")
    haar_eyes: bool = _param(True, "Haar: search eyes in each face to level them (YuNet always has landmarks)")
    min_face_size: int = _param(32, "faces whose box is smaller than this (shorter side, source pixels) are "
                                    "counted but not classified", range=(0, 4096))
    align: bool = _param(True, "rotate crops so the eyes are level when landmarks are known")
    margin: float = _param(0.0, "widen the face crop by this fraction of its side on each side (0 = FER2013 "
                                "framing)", range=(-0.2, 0.5))
    backend: str = _param("auto", "inference backend: auto (by the model file: .onnx onnxruntime, .pt torch, "
                                  ".engine/.plan tensorrt), onnxruntime, torch or tensorrt", dynamic=False,
                          choices=("auto", "onnxruntime", "torch", "tensorrt"))
    model: str | None = _param(None, "model file (.onnx, .pt, .engine), or a shipped model: mix (the default "
                                     "when empty: trained on FER2013, posed photos and film stills), fer2013 "
                                     "(FER2013 only) or ferplus (FER+ labels, 8 classes with contempt); see "
                                     "MODEL_CARD.md", dynamic=False)
    device: str = _param("cpu", "inference device: cpu, cuda[:N], or tensorrt[:N] (onnxruntime's TensorRT "
                                "provider)", dynamic=False)
    flip_average: bool = _param(True, "average each face with its mirror image: about +1 point of accuracy "
                                      "for twice the classifier time (~0.5 ms per face)")
    zoom_average: float = _param(1.0, "also average each face with its centre magnified this many times (and, "
                                      "with flip_average, its mirror); 1.1 gains 0.8 points on FER2013 PublicTest "
                                      "but is not shown to help on camera images; 1 = off", range=(1.0, 1.5))
    confidence_threshold: float = _param(0.4, "below this smoothed probability the label is 'unknown'",
                                         range=(0.0, 1.0))
    smoothing_tau_s: float = _param(0.3, "time constant (s) of the per-face probability average (0 = none)",
                                    range=(0.0, 60.0))
    track_iou: float = _param(0.3, "minimum box overlap (IoU) to continue a face's track", range=(0.0, 1.0))
    track_max_distance: float = _param(0.5, "else continue it if the centres are within this many face sizes",
                                       range=(0.0, 5.0))
    track_max_missed: int = _param(5, "frames a face may go undetected (and not carried) before its id is dropped",
                                   range=(0, 1000))
    track_carry_s: float = _param(1.0, "report a face the detector lost for up to this long (s, by the image "
                                       "stamps) where optical flow follows it and it still looks the same, "
                                       "marked carried (0 = off)", range=(0.0, 10.0))
    track_min_hits: int = _param(2, "frames in a row a new face must be seen before it is reported",
                                 range=(1, 100))

    def __post_init__(self):
        for name in ("detector_model", "model"):  # ROS parameters cannot be None: "" means unset
            if getattr(self, name) == "":
                setattr(self, name, None)
        for f in dataclasses.fields(self):
            reason = validate(f.name, getattr(self, f.name))
            if reason:
                raise ConfigError(reason)


@dataclass
class NodeConfig:
    """Parameters of the node itself (the pipeline's are PipelineConfig's); none can change at run time."""

    mode: str = _param("detector",
        "detector: find, track and classify the faces of the camera images itself; recognizer: classify the faces "
        "another ROS4HRI (REP-155) face detector publishes (/humans/faces/tracked and each face's aligned or "
        "cropped image) and publish /humans/faces/<id>/expression under its ids",
        choices=("detector", "recognizer"), dynamic=False)
    image_topic: str = _param("image",
        "input image topic, relative so that namespaces and remapping apply; with transport 'compressed' the "
        "node subscribes to <image_topic>/compressed", dynamic=False)
    transport: str = _param("raw",
        "'raw' subscribes to sensor_msgs/Image, 'compressed' to sensor_msgs/CompressedImage (JPEG/PNG)",
        choices=("raw", "compressed"), dynamic=False)
    faces_topic: str = _param("faces", "output topic of fer_ros/FaceEmotionArray", dynamic=False)
    detections_topic: str = _param("detections",
        "output topic of vision_msgs/Detection2DArray (all class scores per face, track id in `id`)", dynamic=False)
    debug_image_topic: str = _param("debug_image",
        "output topic of the annotated sensor_msgs/Image (bgr8)", dynamic=False)
    debug_image: bool = _param(True,
        "offer the annotated debug image; it is only drawn while someone subscribes", dynamic=False)
    rep155: bool = _param(False,
        "detector mode: also publish the ROS4HRI (REP-155) face topics: /humans/faces/tracked (hri_msgs/IdsList) "
        "and per face /humans/faces/<id>/roi, landmarks (where known), cropped and aligned (while subscribed) and "
        "expression", dynamic=False)
    rep155_expression: bool = _param(True,
        "detector mode with rep155: publish /humans/faces/<id>/expression too; turn it off when another node "
        "(e.g. fer_node in recognizer mode) classifies the faces", dynamic=False)
    face_image_size: int = _param(128,
        "side in pixels of the REP-155 cropped and aligned face images (REP-155's /humans/faces/width and height "
        "default)", range=(16, 1024), dynamic=False)
    recognizer_image: str = _param("aligned",
        "recognizer mode: the image of each face to classify, /humans/faces/<id>/aligned or /humans/faces/<id>/cropped",
        choices=("aligned", "cropped"), dynamic=False)
    diagnostics_period_s: float = _param(1.0,
        "seconds between diagnostic_msgs/DiagnosticArray messages on /diagnostics", range=(0.1, 60.0), dynamic=False)


def value_type(f: dataclasses.Field) -> type:
    """A config field's value type (str for the optional file paths, where "" means unset); the config
    modules use `from __future__ import annotations`, so field types are strings."""
    return {"bool": bool, "int": int, "float": float}.get(f.type, str)


FIELDS = {f.name: f for f in dataclasses.fields(PipelineConfig)}


def validate(name: str, value, fields: dict[str, dataclasses.Field] = FIELDS) -> str | None:
    """Why `value` is not acceptable for parameter `name` (a field of `fields`), or None if it is."""
    f = fields.get(name)
    if f is None:
        return f"unknown parameter {name!r}"
    expected = value_type(f)
    kind = {float: (int, float), str: (str, type(None)) if f.type == "str | None" else str}.get(expected, expected)
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, kind):
        return f"{name} must be {f.type.replace(' | None', ' or empty')}, not {value!r}"
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}"
    if "range" in meta and not meta["range"][0] <= value <= meta["range"][1]:
        return f"{name} must be within {meta['range'][0]}..{meta['range'][1]}, not {value!r}"
    return None


def coerce(name: str, value, fields: dict[str, dataclasses.Field] = FIELDS):
    """A parameter value as its field's type where that is lossless (int -> float, "" -> None)."""
    f = fields.get(name)
    if f is not None and f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if f is not None and f.type == "str | None" and value == "":
        return None
    return value


#: the default parameters, shipped inside the package; colcon also installs them as share/fer_ros/config/fer.yaml,
#: where the launch files look
DEFAULTS_FILE = Path(__file__).resolve().parent / "config" / "fer.yaml"
#: parameters every ROS 2 node has (rclpy declares them), and prefixes of families of them
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PREFIXES = ("qos_overrides.",)


def load_config(path: str | Path | None = None, **overrides) -> PipelineConfig:
    """The packaged defaults (`DEFAULTS_FILE`) or a ROS 2 parameters file (its "/**" and NODE_NAME sections),
    then `overrides`. ConfigError names the file, the parameter and what is wrong."""
    source = Path(path) if path is not None else DEFAULTS_FILE if DEFAULTS_FILE.is_file() else None
    values = read_parameters(source) if source is not None else {}
    values = {k: v for k, v in values.items() if k in FIELDS}
    values.update(overrides)
    for name, value in values.items():
        reason = validate(name, coerce(name, value))
        if reason and name not in FIELDS:
            reason += _did_you_mean(name, FIELDS)
        if reason:
            raise ConfigError(f"{source}: {reason}" if source is not None and name not in overrides else reason)
    return PipelineConfig(**{k: coerce(k, v) for k, v in values.items()})


def known_parameters() -> frozenset[str]:
    """Every parameter name fer_node has: the pipeline's (PipelineConfig) and the node's (NodeConfig)."""
    return frozenset(FIELDS) | frozenset(f.name for f in dataclasses.fields(NodeConfig))


def _did_you_mean(name: str, known, cutoff: float = 0.6) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def read_parameters(path: str | Path) -> dict:
    """Flat {name: value} from a parameters file: `/**:` and `fer_node:` sections (nested keys dot-joined);
    a file without `ros__parameters` is read as the parameters themselves.

    A name fer_node does not have (`known_parameters`, or one every ROS node has) is a ConfigError with the
    nearest known name, except in the "/**" section: that applies to every node, so it may hold other nodes'
    parameters; there such a name gives a FerRosWarning unless it is within a typo of one of ours (an error).
    Sections of other nodes are skipped.
    """
    path = Path(path)
    data = read_yaml(path, "parameters file", ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters, found {type(data).__name__}; "
                          "see fer_ros/config/fer.yaml for the layout")
    sections = [(str(k), v["ros__parameters"]) for k, v in data.items()
                if isinstance(v, dict) and "ros__parameters" in v
                and (k == "/**" or str(k).rstrip("/").rsplit("/", 1)[-1] == NODE_NAME)]
    if not sections and not any(isinstance(v, dict) and "ros__parameters" in v for v in data.values()):
        sections = [("", data)]
    known = known_parameters()
    params = {}
    for name, section in sections:
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: ros__parameters must be a mapping of names to values, "
                              f"not {type(section).__name__}")
        flat = _flatten(section or {})
        unknown = [k for k in flat if k not in known and k not in ROS_PARAMETERS and not k.startswith(ROS_PREFIXES)]
        for key in unknown:
            typo = _did_you_mean(key, known, cutoff=0.8 if name == "/**" else 0.6)
            if name != "/**" or typo:
                where = f"{path}: {name}: " if name else f"{path}: "
                raise ConfigError(f"{where}unknown parameter {key!r}{typo or '; fer_node has none of that name'}"
                                  " (fer_ros/config/fer.yaml lists them all)")
        if unknown:
            import warnings

            warnings.warn(f"{path}: '/**' section: ignoring {', '.join(unknown)}: not parameters of fer_node "
                          "('/**' applies to every node, so they may be another node's)", FerRosWarning,
                          stacklevel=2)
        params.update({k: v for k, v in flat.items() if k not in unknown})
    return params


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


#: the parameters that say how faces are found and framed (`fer-ros evaluate` on image folders takes these)
FACE_FIELDS = ("detector", "detector_model", "detection_size", "detection_score", "haar_scale_factor",
               "haar_min_neighbors", "haar_thorough", "haar_eyes", "align", "margin")


def add_arguments(parser: argparse.ArgumentParser, names=tuple(FIELDS)) -> None:
    """One command-line option per pipeline parameter in `names` (--smoothing-tau-s ...), defaulting to unset."""
    g = parser.add_argument_group("pipeline parameters (as the node's; they override --config)")
    for name, f in ((n, FIELDS[n]) for n in names):
        help_ = f.metadata["description"].replace("%", "%%")
        if value_type(f) is bool:
            g.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None,
                           help=help_)
        else:
            limits = f.metadata.get("range")
            g.add_argument(f"--{name.replace('_', '-')}", type=_option_type(name, f), default=None,
                           choices=f.metadata.get("choices"), metavar=f"{limits[0]}..{limits[1]}" if limits else None,
                           help=help_)


def _option_type(name: str, f: dataclasses.Field):
    """The argparse type of a parameter's option: its value type, checked against the field's range (declared
    once, in the field's metadata, and enforced by argparse)."""
    kind = value_type(f)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {kind.__name__}, not {text!r}") from None
        reason = validate(name, value) if kind is not str else None
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = kind.__name__
    return parse


def overrides_from(args: argparse.Namespace, names=tuple(FIELDS)) -> dict:
    """The pipeline parameters in `names` given on the command line by `add_arguments`."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
