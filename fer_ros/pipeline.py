"""The face pipeline: image -> faces -> tracks -> crops -> one batched classification -> smoothed labels.

While faces are tracked, the detector scans the whole frame every `detection_period_s` and in
between looks only near them; after a frame in which a face was new, or was not found again near
where it was, and while no face is tracked, it scans every frame whole. A face the detector loses
is carried by the visual tracker (`fer_ros.vision.carry`) for up to `track_carry_s` and reported with
`carried` set.

ROS-free and torch-free (with the onnxruntime backend); the ROS node, `fer-ros infer`, replay and
the frame benchmark all run this class.
"""

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .classes import UNKNOWN
from .config import FACE_FIELDS, FIELDS, ConfigError, PipelineConfig, coerce, validate
from .errors import ModelFileError
from .framing import Framer
from .inference import Backend, load_backend
from .stamps import StampCheck
from .vision.carry import Carrier
from .vision.encodings import check_frame
from .vision.faces import Detector
from .vision.scenecut import SceneCut
from .vision.tracking import Tracker


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
    #: no detector found the face in this frame: the visual tracker carried it from the last one
    carried: bool = False
    #: what found it (`fer_ros.vision.faces.STAGES`; for a carried face, what last did)
    stage: str = ""

    def to_dict(self, classes: tuple[str, ...]) -> dict:
        return {"id": self.track_id, "box": [round(float(v), 1) for v in self.box], "score": round(self.score, 4),
                "carried": self.carried, "stage": self.stage,
                "label": self.label, "confidence": round(float(self.confidence), 4),
                "probabilities": {c: round(float(p), 4) for c, p in zip(classes, self.probs, strict=True)},
                "raw_probabilities": {c: round(float(p), 4) for c, p in zip(classes, self.raw_probs, strict=True)}}


@dataclass
class FrameResult:
    """A frame's confirmed faces, with stage timings in ms (detect, align, classify, track: with the visual
    tracker and smoothing, total)."""

    stamp: float
    faces: list[FaceResult]
    classes: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    #: faces detected but smaller than min_face_size (not classified; they are not tracked, so they are
    #: counted on whole-frame scans only)
    n_small: int = 0
    #: whether the whole frame was searched for faces (else only near tracked faces)
    full_scan: bool = True
    #: this frame shows another scene than the one before (`fer_ros.vision.scenecut`): every track ended there
    scene_cut: bool = False

    def to_dict(self) -> dict:
        return {"stamp": self.stamp, "faces": [f.to_dict(self.classes) for f in self.faces],
                "n_small": self.n_small, "full_scan": self.full_scan, "scene_cut": self.scene_cut,
                "latency_ms": {k: round(v, 3) for k, v in self.timings.items()}}


class Pipeline:
    """Runs one camera stream: keep one Pipeline per stream (it holds the tracks)."""

    def __init__(self, config: PipelineConfig | None = None, backend: Backend | None = None):
        self.config = config or PipelineConfig()
        self.backend = backend or load_backend(self.config.model, self.config.backend, self.config.device)
        if self.backend.in_channels != 1:
            raise ModelFileError(f"{self.backend.path}: the pipeline feeds grey crops, but the model expects "
                                 f"{self.backend.in_channels} input channels")
        self.framer = Framer(self.config, self.backend.input_size)
        self.tracker = Tracker()
        self.carrier = Carrier()
        self.cuts = SceneCut()
        self._configure_tracker()
        self._last_scan: float | None = None  # stamp of the last whole-frame search
        self.stamps = StampCheck()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.backend.classes

    @property
    def detector_note(self) -> str:
        """Which detector runs and why (for `detector: auto`, what would give YuNet): one line for a log."""
        return f"face detector {self.detector.note}"

    @property
    def detector_info(self) -> dict:
        """The detector that runs, for reports and diagnostics: name, model file (YuNet's, else None) and why."""
        model = getattr(self.detector, "path", None)
        return {"name": self.detector.name, "model": str(model) if model else None, "why": self.detector.note}

    @property
    def detector(self) -> Detector:
        return self.framer.detector

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
        if any(getattr(config, k) != getattr(self.config, k) for k in FACE_FIELDS):  # a new detector
            self.framer = Framer(config, self.backend.input_size)
            self._last_scan = None
        self.config = config
        self._configure_tracker()

    def reset(self) -> None:
        """Forget all tracks (a new stream, a jump in time); ids start from 1 again."""
        self.tracker.reset()
        self.carrier.reset()
        self.cuts.reset()
        self._last_scan = None
        self.stamps.reset()

    def process_image(self, image: np.ndarray) -> FrameResult:
        """One still image, on its own: every face found is reported (a stream's `process` reports a face once
        seen `track_min_hits` frames in a row), and Haar scans thoroughly. Forgets the stream's tracks."""
        self.reset()
        result = self._process(image, 0.0, still=True)
        self.reset()
        return result

    def process(self, image: np.ndarray, stamp: float) -> FrameResult:
        """Run one BGR (H, W, 3) or grey (H, W) uint8 frame taken at `stamp` seconds. A stamp that is not finite
        is replaced by the last good one, and one before the last starts the tracks over (`fer_ros.stamps`)."""
        stamp, went_back = self.stamps.check(stamp)
        if went_back:
            self.reset()
            self.stamps.check(stamp)
        return self._process(image, stamp, still=False)

    def _process(self, image: np.ndarray, stamp: float, still: bool) -> FrameResult:
        image = check_frame(image)  # ImageError for a non-image or one beyond encodings.MAX_SIDE / MAX_PIXELS
        c = self.config
        t0 = time.perf_counter()
        cut = self.cuts.update(image)
        if cut:  # another scene: its faces are other faces, with new ids, fresh smoothing, nothing carried over
            self.tracker.end_all()
            self.carrier.reset()
            self._last_scan = None
        last = self._last_scan
        # while faces are tracked, the whole frame is searched every detection_period_s, and also after any
        # frame in which a face was new (to confirm it) or not found again near where it was (to find it
        # wherever it went); while none is, every frame
        tracks = self.tracker.tracks
        full = last is None or not 0.0 < stamp - last < c.detection_period_s or not tracks or \
            any(not t.confirmed or t.missed > 0 or t.face is None or t.face.carried for t in tracks)
        if full:
            faces = self.detector.detect(image, still=still)
            self._last_scan = stamp
        else:
            faces = self.detector.detect_near(image, [t.box for t in self.tracker.tracks])
        big, n_small = self.framer.split_small(faces)
        t1 = time.perf_counter()
        self.carrier.next_frame(image)
        looks = [self.carrier.patch(face.box) for face in big]
        tracks = self.tracker.update([f.box for f in big], stamp, min_hits=1 if still else None, looks=looks)
        for face, track, look in zip(big, tracks, looks, strict=True):
            track.face, track.appearance = face, look
        if c.track_carry_s > 0:
            for track in self._to_carry(stamp):
                moved = self.carrier.move(track.box, track.appearance)
                if moved is None:
                    track.lost = True
                else:
                    big.append(self.tracker.carry(track, moved[0]))
                    tracks.append(track)
        t2 = time.perf_counter()
        crops = self.framer.crops(image, big)
        t3 = time.perf_counter()
        raw = self.backend.classify(crops, c.flip_average, c.zoom_average)
        t4 = time.perf_counter()
        results = []
        for face, track, p in zip(big, tracks, raw, strict=True):
            probs = track.smooth(p, stamp, c.smoothing_tau_s)
            if not track.confirmed:
                continue
            best = int(np.argmax(probs))
            label = self.classes[best] if probs[best] >= c.confidence_threshold else UNKNOWN
            results.append(FaceResult(track.id, face.box, face.score, label, float(probs[best]), probs.copy(), p,
                                      face.landmarks, face.carried, face.stage))
        t5 = time.perf_counter()
        ms = {"detect": t1 - t0, "align": t3 - t2, "classify": t4 - t3, "track": t2 - t1 + t5 - t4, "total": t5 - t0}
        return FrameResult(stamp, results, self.classes, {k: v * 1e3 for k, v in ms.items()},
                           n_small, full, cut)

    def _to_carry(self, stamp: float) -> list:
        """Confirmed tracks not detected in this frame that the visual tracker may carry: detected within
        `track_carry_s` (stamp seconds) and not lost since."""
        return [t for t in self.tracker.tracks
                if t.confirmed and t.missed > 0 and not t.lost and t.appearance is not None and t.seen is not None
                and 0.0 <= stamp - t.seen <= self.config.track_carry_s]
