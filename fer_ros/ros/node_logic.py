"""The node's logic without ROS: parameters, newest-frame slot, statistics, per-face topic bookkeeping.

`fer_ros.ros.node` wires these to rclpy; everything here is plain Python so it is tested without ROS.
"""

from __future__ import annotations

import difflib
import math
import statistics
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import PurePath
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from .. import config as pipeline_config
from ..classes import UNKNOWN
from ..config import ConfigError, NodeConfig, PipelineConfig
from ..stamps import StampCheck

T = TypeVar("T")

#: seconds of history behind the rates and latencies in the diagnostics
STATS_WINDOW_S = 10.0


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter: default, description, range or choices, and whether it can change at run time."""

    name: str
    default: bool | int | float | str
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    dynamic: bool = False

    @property
    def text(self) -> str:
        """The description with the allowed values, for ParameterDescriptor.description."""
        return f"{self.description} (one of: {', '.join(self.choices)})" if self.choices else self.description


def _specs_of(cls) -> list[ParameterSpec]:
    """Specs from a config dataclass's field metadata; a None default (unset file path) is "" in ROS."""
    return [ParameterSpec(name=f.name, default="" if f.default is None else f.default,
                          description=f.metadata["description"], range=f.metadata.get("range"),
                          choices=f.metadata.get("choices"), dynamic=f.metadata["dynamic"])
            for f in fields(cls)]


#: every node parameter, the pipeline's first; names are unique across both
PARAMETERS: dict[str, ParameterSpec] = {s.name: s for s in _specs_of(PipelineConfig) + _specs_of(NodeConfig)}
PIPELINE_NAMES = frozenset(pipeline_config.FIELDS)
#: the config fields behind the parameters, for `config.validate` and `config.coerce`
FIELDS = {**pipeline_config.FIELDS, **{f.name: f for f in fields(NodeConfig)}}


def validate_parameter(name: str, value: Any, running: bool = True) -> str | None:
    """Why `value` is not acceptable for parameter `name` (None if it is); `running` = a run-time change."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    if running and not spec.dynamic:
        return f"{name} is read-only while the node runs: set it in the parameters file and restart"
    return pipeline_config.validate(name, to_config_value(name, value), FIELDS)


def to_config_value(name: str, value: Any) -> Any:
    """A ROS parameter value as the config dataclasses hold it (int -> float, "" -> None where optional)."""
    return pipeline_config.coerce(name, value, FIELDS)


def parameter_from_text(name: str, text: str) -> bool | int | float | str:
    """A parameter value from its text (a launch argument), typed like the parameter's default; ConfigError
    names the parameter and what is wrong (unknown name, bad number, out of range, not a choice)."""
    spec = PARAMETERS.get(name)
    if spec is None:
        raise ConfigError(f"unknown parameter {name!r}{_did_you_mean(name, PARAMETERS)}")
    text = str(text).strip()
    try:
        if isinstance(spec.default, bool):
            words = {"true": True, "1": True, "yes": True, "on": True,
                     "false": False, "0": False, "no": False, "off": False}
            if text.lower() not in words:
                raise ValueError
            value: bool | int | float | str = words[text.lower()]
        elif isinstance(spec.default, int):
            value = int(text)
        elif isinstance(spec.default, float):
            value = float(text)
        else:
            value = text
    except ValueError:
        raise ConfigError(f"{name} must be {type(spec.default).__name__}, not {text!r}") from None
    reason = validate_parameter(name, value, running=False)
    if reason:
        raise ConfigError(reason)
    return value


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: how a launch file is named on the `ros2 launch` command line
_LAUNCH_SUFFIXES = (".launch.py", ".launch.xml", ".launch.yaml", ".py", ".xml", ".yaml")


def launch_file_on_command_line(argv: Sequence[str]) -> str | None:
    """The file name of the launch file `ros2 launch [package] FILE name:=value ...` runs, or None."""
    for token in argv[1:]:
        if ":=" not in token and not token.startswith("-") and token.endswith(_LAUNCH_SUFFIXES):
            return PurePath(token).name
    return None


def unknown_launch_arguments(launch_file: str, argv: Sequence[str], known: Iterable[str]) -> str | None:
    """Why the command line's `name:=value` arguments do not suit `launch_file` (None if they do).

    Only the launch file named on the command line checks them (one it includes gets them too, and
    ros2 launch passes every argument on without a word about those no file declares)."""
    if launch_file_on_command_line(argv) != PurePath(launch_file).name:
        return None
    known = sorted(known)
    unknown = [t.split(":=", 1)[0] for t in argv[1:] if ":=" in t and t.split(":=", 1)[0] not in known]
    if not unknown:
        return None
    listed = ", ".join(f"{n!r}{_did_you_mean(n, known)}" for n in unknown)
    return (f"{PurePath(launch_file).name}: unknown launch argument{'s' if len(unknown) > 1 else ''} {listed}; "
            f"it takes: {', '.join(known)} (ros2 launch ... --show-args describes them)")


def configs_from_parameters(values: Mapping[str, Any]) -> tuple[PipelineConfig, NodeConfig]:
    """PipelineConfig and NodeConfig from start-up parameter values (missing names keep their defaults);
    ConfigError names the first bad value. Names that are not ours (use_sim_time, ...) are ignored."""
    ours = {name: v for name, v in values.items() if name in PARAMETERS}
    for name, value in ours.items():
        reason = validate_parameter(name, value, running=False)
        if reason:
            raise ConfigError(reason)
    converted = {name: to_config_value(name, v) for name, v in ours.items()}
    pipeline = PipelineConfig(**{k: v for k, v in converted.items() if k in PIPELINE_NAMES})
    node = NodeConfig(**{k: v for k, v in converted.items() if k not in PIPELINE_NAMES})
    return pipeline, node


class LatestSlot(Generic[T]):
    """Holds only the newest item: a put() over an unprocessed one drops (and counts) the older.

    The subscription callback puts, the worker takes; so when inference is slower than the camera,
    stale frames are dropped instead of queueing up latency.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store the newest item; True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (emptying the slot), or None after `timeout` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake and release a waiting take() for good (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FrameStatistics:
    """Input/output rates, drops, failures, stamp-to-publish latency and faces per frame over a window.

    Times are the node clock's seconds (simulated time under use_sim_time); a clock that jumps back
    by more than a second, as when a bag loops, restarts the window. Thread-safe.
    """

    def __init__(self, window_s: float = STATS_WINDOW_S) -> None:
        self.window_s = window_s
        self.received = self.dropped = self.failed = self.processed = 0
        self._inputs: deque[float] = deque()
        self._outputs: deque[tuple[float, float, int]] = deque()  # (time, latency s, faces)
        self._start: float | None = None
        self._latest = -float("inf")
        self._lock = threading.Lock()

    def _advance(self, now: float) -> None:
        if self._start is None or now < self._latest - 1.0:
            self._inputs.clear()
            self._outputs.clear()
            self._start = self._latest = now
        self._latest = max(self._latest, now)
        while self._inputs and self._inputs[0] < now - self.window_s:
            self._inputs.popleft()
        while self._outputs and self._outputs[0][0] < now - self.window_s:
            self._outputs.popleft()

    def on_input(self, now: float, dropped_one: bool = False) -> None:
        """A frame arrived; dropped_one = it replaced a frame that was never processed."""
        with self._lock:
            self._advance(now)
            self._inputs.append(now)
            self.received += 1
            self.dropped += dropped_one

    def on_output(self, now: float, latency_s: float, n_faces: int) -> None:
        """A frame's messages were published `latency_s` after its stamp."""
        with self._lock:
            self._advance(now)
            self._outputs.append((now, latency_s, n_faces))
            self.processed += 1

    def on_failure(self) -> None:
        with self._lock:
            self.failed += 1

    def summary(self, now: float) -> dict[str, float | int]:
        """The values the diagnostics report; rates and latencies over the last window_s seconds."""
        with self._lock:
            self._advance(now)
            span = min(self.window_s, max(now - self._start, 1e-9))
            latencies = [lat for _, lat, _ in self._outputs]
            faces = [n for _, _, n in self._outputs]
            return {
                "input_rate_hz": len(self._inputs) / span,
                "processed_rate_hz": len(self._outputs) / span,
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_failed": self.failed,
                "latency_median_ms": 1e3 * statistics.median(latencies) if latencies else 0.0,
                "latency_max_ms": 1e3 * max(latencies) if latencies else 0.0,
                "faces_per_frame": statistics.fmean(faces) if faces else 0.0,
            }


#: what each counter in the diagnostics counts (in recognizer mode a "frame" is one face image)
COUNTERS = {
    "frames_received": "frames the image subscription handed to the node",
    "frames_lost_in_transport": "frames their publisher sent that never reached the node: lost by best-effort "
                                "transport or overwritten in the subscription's queue (gaps in the rmw's publication "
                                "sequence numbers); 'unknown' where rclpy (Humble's) or the rmw (rmw_cyclonedds_cpp) "
                                "gives none, or several publishers share the topic",
    "frames_dropped": "frames received but replaced by a newer one before the node got to them (inference slower "
                      "than the camera; the node keeps only the newest)",
    "frames_failed": "frames that could not be decoded or processed (logged and skipped)",
    "frames_processed": "frames whose results were published",
}


def diagnostic_level(summary: Mapping[str, float | int]) -> tuple[str, str]:
    """("OK" | "WARN", message) for a statistics summary."""
    if summary["input_rate_hz"] == 0:
        return "WARN", "no images received in the last window"
    if summary["processed_rate_hz"] == 0:
        return "WARN", "images arrive but none was processed in the last window"
    drop_share = 1.0 - summary["processed_rate_hz"] / summary["input_rate_hz"]
    if drop_share > 0.5:
        return "WARN", f"processing only {100 * (1 - drop_share):.0f}% of input frames (inference slower than camera)"
    return "OK", f"{summary['processed_rate_hz']:.1f} frames/s, {summary['faces_per_frame']:.1f} faces/frame"


class TrackTopics:
    """Which per-face topics exist: an id that appears gets one; one that has been missing for more
    than `keep` frames in a row (as the tracker keeps an undetected face for track_max_missed frames)
    loses it, so a face that is missed for a frame or two does not churn publishers."""

    def __init__(self) -> None:
        self._missed: dict[str, int] = {}

    @property
    def ids(self) -> list[str]:
        """The ids that currently have a topic, sorted."""
        return sorted(self._missed)

    def update(self, seen: Iterable[str], keep: int = 0) -> tuple[list[str], list[str]]:
        """(added, removed) ids, each sorted, after a frame in which `seen` were visible."""
        seen = set(seen)
        added = sorted(seen - self._missed.keys())
        for fid in self._missed:
            self._missed[fid] = 0 if fid in seen else self._missed[fid] + 1
        removed = sorted(fid for fid, n in self._missed.items() if n > keep)
        for fid in removed:
            del self._missed[fid]
        self._missed.update(dict.fromkeys(added, 0))
        return added, removed


class TransportLoss:
    """Messages a publisher sent that never reached the subscription callback, from the rmw's publication
    sequence numbers.

    rclpy hands a callback that takes two arguments the message info with `publication_sequence_number`
    (rclpy 3.x of Humble does not; Iron, Jazzy and later do). It is None where the rmw does not number
    messages: rmw_fastrtps_cpp (the default rmw) does, rmw_cyclonedds_cpp does not (Humble to Rolling). A
    publisher numbers its messages one by one, so a jump from n to n + k + 1 means k messages were lost
    in transport or overwritten in the subscription's queue before the node took them. The numbers are
    per publisher and rclpy does not say which publisher sent a message, so a topic counts only while it
    has one publisher; a number that goes back (a publisher restarted) starts the count again. Thread-safe.
    """

    def __init__(self) -> None:
        self.lost = 0
        self.available: bool | None = None  # None: no message seen yet
        self.shared = False  # a topic had several publishers when a message came
        self._last: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def observe(self, key: Hashable, sequence: int | None, publishers: int = 1) -> int:
        """A message arrived on topic `key` with this publication sequence number; the number lost before it."""
        with self._lock:
            if sequence is None:
                if self.available is None:
                    self.available = False
                return 0
            self.available = True
            if publishers > 1:
                self.shared = True
                self._last.pop(key, None)
                return 0
            last, self._last[key] = self._last.get(key), int(sequence)
            if last is None or sequence <= last:
                return 0
            gap = int(sequence) - last - 1
            self.lost += gap
            return gap

    def forget(self, key: Hashable) -> None:
        """Topic `key` is no longer subscribed."""
        with self._lock:
            self._last.pop(key, None)

    def value(self) -> int | str:
        """The diagnostics value: the count, or why it is unknown."""
        with self._lock:
            if self.available is None:
                return "unknown (no frame yet)"
            if not self.available:
                return ("unknown (this rclpy or rmw gives no publication sequence numbers: Humble's rclpy, "
                        "rmw_cyclonedds_cpp)")
            if self.shared:
                return f"{self.lost}+ (unknown while several publishers share the topic)"
            return self.lost


class LatestPerKey(Generic[T]):
    """The newest item of each key (a face id): a put() over an untaken item of that key drops it; take()
    returns every pending item at once, so the worker classifies all faces with a new image in one batch."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[Hashable, T] = {}
        self._closed = False

    def put(self, key: Hashable, item: T) -> bool:
        """Store the newest item of `key`; True if it replaced one that was never taken."""
        with self._cond:
            replaced = key in self._items
            self._items[key] = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> dict[Hashable, T]:
        """Every pending item by key (emptying the slots); {} after `timeout` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            items, self._items = self._items, {}
            return items

    def discard(self, key: Hashable) -> None:
        with self._cond:
            self._items.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def face_crop(image: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) grey crop, framed like the pipeline's, of a face image another detector published.

    REP-155 cropped/aligned images hold one face scaled to fit and 0-padded to the image size
    (hri_face_detect: 128x128 bgr8); the padding is cut off, and the rest made square about its centre
    (edge pixels repeated), like the pipeline's crop of a face box without landmarks.
    """
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    if len(rows) and len(cols):
        image = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = image.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    if side == size:
        return square
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


@dataclass
class Recognition:
    """One face image classified in recognizer mode; probs are smoothed over time, raw_probs are this image's."""

    face_id: str
    stamp: float
    label: str
    confidence: float
    probs: np.ndarray
    raw_probs: np.ndarray


class FaceRecognizer:
    """Recognizer mode without ROS: classify the face images another detector publishes, one per face id,
    with the pipeline's model and test-time views, and smooth each face's probabilities over the image
    stamps (`smoothing_tau_s`, as the pipeline does per track). Stamps pass the pipeline's check
    (`fer_ros.stamps`): one that is not finite counts as the face's last good one, and one earlier than
    the face's last (a bag played again) restarts its average."""

    def __init__(self, backend, config: PipelineConfig) -> None:
        self.backend = backend
        self.config = config
        self._state: dict[str, tuple[float, np.ndarray]] = {}  # face id -> (stamp, smoothed probabilities)
        self.stamps = StampCheck("face image")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.backend.classes

    def classify(self, faces: Mapping[str, tuple[np.ndarray, float]]) -> list[Recognition]:
        """Face id -> (BGR or grey face image, stamp s) to one Recognition per face, in one batch."""
        ids = sorted(faces)
        if not ids:
            return []
        c = self.config
        crops = np.stack([face_crop(faces[i][0], self.backend.input_size) for i in ids])
        raw = self.backend.classify(crops, c.flip_average, c.zoom_average)
        out = []
        for fid, p in zip(ids, raw, strict=True):
            stamp, went_back = self.stamps.check(faces[fid][1], fid)
            p = np.asarray(p, np.float32)
            last = self._state.get(fid)
            if last is None or went_back or c.smoothing_tau_s <= 0.0:
                probs = p.copy()
            else:
                alpha = 1.0 - math.exp(-(stamp - last[0]) / c.smoothing_tau_s)
                probs = ((1.0 - alpha) * last[1] + alpha * p).astype(np.float32)
            self._state[fid] = (stamp, probs)
            best = int(np.argmax(probs))
            label = self.classes[best] if probs[best] >= c.confidence_threshold else UNKNOWN
            out.append(Recognition(fid, stamp, label, float(probs[best]), probs.copy(), p))
        return out

    def forget(self, face_id: str) -> None:
        """The face is no longer tracked upstream."""
        self._state.pop(face_id, None)
        self.stamps.forget(face_id)
