"""The node's logic without ROS: parameters, newest-frame slot, statistics, per-face topic bookkeeping.

`fer_ros.node` wires these to rclpy; everything here is plain Python so it is tested without ROS.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from . import config as pipeline_config
from .config import ConfigError, PipelineConfig

T = TypeVar("T")

#: seconds of history behind the rates and latencies in the diagnostics
STATS_WINDOW_S = 10.0


def _meta(description: str, **extra) -> dict:
    return {"description": description, "dynamic": False, **extra}


@dataclass
class NodeConfig:
    """Parameters of the node itself (the pipeline's are PipelineConfig's); none can change at run time."""

    image_topic: str = field(default="image", metadata=_meta(
        "input image topic, relative so that namespaces and remapping apply; with transport 'compressed' the "
        "node subscribes to <image_topic>/compressed"))
    transport: str = field(default="raw", metadata=_meta(
        "'raw' subscribes to sensor_msgs/Image, 'compressed' to sensor_msgs/CompressedImage (JPEG/PNG)",
        choices=("raw", "compressed")))
    faces_topic: str = field(default="faces", metadata=_meta("output topic of fer_ros/FaceEmotionArray"))
    detections_topic: str = field(default="detections", metadata=_meta(
        "output topic of vision_msgs/Detection2DArray (all class scores per face, track id in `id`)"))
    debug_image_topic: str = field(default="debug_image", metadata=_meta(
        "output topic of the annotated sensor_msgs/Image (bgr8)"))
    debug_image: bool = field(default=True, metadata=_meta(
        "offer the annotated debug image; it is only drawn while someone subscribes"))
    rep155: bool = field(default=False, metadata=_meta(
        "also publish the ROS4HRI (REP-155) layout: /humans/faces/tracked (hri_msgs/IdsList) and "
        "/humans/faces/<id>/expression (hri_msgs/Expression)"))
    diagnostics_period_s: float = field(default=1.0, metadata=_meta(
        "seconds between diagnostic_msgs/DiagnosticArray messages on /diagnostics", range=(0.1, 60.0)))


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
        self.dropped = self.failed = self.processed = 0
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
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_failed": self.failed,
                "latency_median_ms": 1e3 * statistics.median(latencies) if latencies else 0.0,
                "latency_max_ms": 1e3 * max(latencies) if latencies else 0.0,
                "faces_per_frame": statistics.fmean(faces) if faces else 0.0,
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
