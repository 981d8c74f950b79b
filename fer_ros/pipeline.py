"""The face pipeline: image -> faces -> crops -> one batched classification -> tracks -> smoothed labels.

ROS-free and torch-free (with the onnxruntime backend); the ROS node, `fer-ros infer`, replay and
the frame benchmark all run this class.
"""

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .align import crop_faces
from .classes import UNKNOWN
from .config import FIELDS, ConfigError, PipelineConfig, coerce, validate
from .errors import ModelFileError
from .faces import Detector, Face, make_detector
from .inference import Backend, load_backend
from .tracking import Tracker

#: parameters that need a new detector when they change
_DETECTOR_FIELDS = ("detector", "detector_model", "detection_size", "detection_score", "haar_scale_factor",
                    "haar_min_neighbors", "haar_eyes", "align")


@dataclass
class FaceResult:
    """One tracked face in one frame; probs are smoothed over time, raw_probs are this frame's."""

    track_id: int
    box: np.ndarray
    score: float
    label: str
    confidence: float
    probs: np.ndarray
    raw_probs: np.ndarray
    landmarks: np.ndarray | None = None

    def to_dict(self, classes: tuple[str, ...]) -> dict:
        return {"id": self.track_id, "box": [round(float(v), 1) for v in self.box], "score": round(self.score, 4),
                "label": self.label, "confidence": round(float(self.confidence), 4),
                "probabilities": {c: round(float(p), 4) for c, p in zip(classes, self.probs, strict=True)},
                "raw_probabilities": {c: round(float(p), 4) for c, p in zip(classes, self.raw_probs, strict=True)}}


@dataclass
class FrameResult:
    """A frame's confirmed faces, with stage timings in ms (detect, align, classify, track, total)."""

    stamp: float
    faces: list[FaceResult]
    classes: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    #: faces detected but smaller than min_face_size (not classified; they are not tracked, so they are
    #: counted on whole-frame scans only)
    n_small: int = 0
    #: whether the whole frame was searched for faces (else only near tracked faces)
    full_scan: bool = True

    def to_dict(self) -> dict:
        return {"stamp": self.stamp, "faces": [f.to_dict(self.classes) for f in self.faces],
                "n_small": self.n_small, "full_scan": self.full_scan,
                "latency_ms": {k: round(v, 3) for k, v in self.timings.items()}}


class Pipeline:
    """Runs one camera stream: keep one Pipeline per stream (it holds the tracks)."""

    def __init__(self, config: PipelineConfig | None = None, backend: Backend | None = None):
        self.config = config or PipelineConfig()
        self.backend = backend or load_backend(self.config.model, self.config.backend, self.config.device)
        if self.backend.in_channels != 1:
            raise ModelFileError(f"{self.backend.path}: the pipeline feeds grey crops, but the model expects "
                                 f"{self.backend.in_channels} input channels")
        self.detector = self._make_detector(self.config)
        self.tracker = Tracker()
        self._configure_tracker()
        self._last_scan: float | None = None  # stamp of the last whole-frame search

    @property
    def classes(self) -> tuple[str, ...]:
        return self.backend.classes

    @staticmethod
    def _make_detector(config: PipelineConfig) -> Detector:
        options = {"detection_size": config.detection_size}
        if config.detector == "haar":
            options.update(scale_factor=config.haar_scale_factor, min_neighbors=config.haar_min_neighbors,
                           eyes=config.haar_eyes and config.align)  # eyes only serve alignment
        else:
            options.update(score_threshold=config.detection_score)
        return make_detector(config.detector, config.detector_model, **options)

    def _configure_tracker(self) -> None:
        c, t = self.config, self.tracker
        t.iou_threshold, t.max_distance = c.track_iou, c.track_max_distance
        t.max_missed, t.min_hits = c.track_max_missed, c.track_min_hits

    def update_config(self, **changes) -> None:
        """Change run-time parameters (all or none); ConfigError for a bad value or a static parameter."""
        changes = {k: coerce(k, v) for k, v in changes.items()}
        for name, value in changes.items():
            reason = validate(name, value)
            if reason:
                raise ConfigError(reason)
            if not FIELDS[name].metadata["dynamic"] and value != getattr(self.config, name):
                raise ConfigError(f"{name} cannot change while running: restart with the new value")
        config = dataclasses.replace(self.config, **changes)
        if any(getattr(config, k) != getattr(self.config, k) for k in _DETECTOR_FIELDS):
            self.detector = self._make_detector(config)
            self._last_scan = None
        self.config = config
        self._configure_tracker()

    def reset(self) -> None:
        """Forget all tracks (a new stream, a jump in time); ids start from 1 again."""
        self.tracker.reset()
        self._last_scan = None

    def process(self, image: np.ndarray, stamp: float) -> FrameResult:
        """Run one BGR (H, W, 3) or grey (H, W) uint8 frame taken at `stamp` seconds."""
        c = self.config
        t0 = time.perf_counter()
        last = self._last_scan
        full = last is None or not 0.0 < stamp - last < c.detection_period_s
        if full:
            faces = self.detector.detect(image)
            self._last_scan = stamp
        else:
            faces = self.detector.detect_near(image, [t.box for t in self.tracker.tracks])
        big = [f for f in faces if min(f.box[2], f.box[3]) >= c.min_face_size]
        t1 = time.perf_counter()
        crops = crop_faces(image, big if c.align else [Face(f.box, f.score) for f in big], self.backend.input_size,
                           c.margin)
        t2 = time.perf_counter()
        raw = self.backend.classify(crops, c.flip_average, c.zoom_average)
        t3 = time.perf_counter()
        results = []
        for face, track, p in zip(big, self.tracker.update([f.box for f in big]), raw, strict=True):
            probs = track.smooth(p, stamp, c.smoothing_tau_s)
            if not track.confirmed:
                continue
            best = int(np.argmax(probs))
            label = self.classes[best] if probs[best] >= c.confidence_threshold else UNKNOWN
            results.append(FaceResult(track.id, face.box, face.score, label, float(probs[best]), probs.copy(), p,
                                      face.landmarks))
        t4 = time.perf_counter()
        ms = {"detect": t1 - t0, "align": t2 - t1, "classify": t3 - t2, "track": t4 - t3, "total": t4 - t0}
        return FrameResult(stamp, results, self.classes, {k: v * 1e3 for k, v in ms.items()}, len(faces) - len(big),
                           full)
