"""Face tracks with stable ids across frames, and per-track smoothing of class probabilities.

Association is greedy: detection/track pairs by falling box overlap (IoU), then, for what is
left, by rising centre distance (in face sizes, for fast motion). A pair is allowed only while the
face still looks like the track: when both have a look (a small grey patch, `carry.PATCH`), its
normalised correlation with one of the track's last `LOOKS` detections must reach `min_likeness`
(the same face in consecutive frames of the real clips: >= 0.82; two people: median 0.3). A face
that does not is a new track, so an id never moves to another person. `end_all` ends every track
at a scene cut (ids go on rising). A new track is tentative
until it has been seen `min_hits` frames in a row (a tentative track that misses a frame is
dropped); then it gets the next public id. A confirmed track survives `max_missed` frames
without a detection; frames in which the visual tracker carried it (`carry`) do not count.
Probabilities are averaged with an exponential moving average whose weight comes from the
message stamps, alpha = 1 - exp(-dt / tau), so the smoothing is the same at any frame rate.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .carry import likeness
from .faces import Face, iou

#: how many of a track's last detections its looks are compared with
LOOKS = 3


def ema_alpha(dt: float, tau: float) -> float:
    """Weight of a new observation `dt` seconds after the last one, for time constant `tau` seconds."""
    if tau <= 0.0:
        return 1.0
    return float(1.0 - np.exp(-max(dt, 0.0) / tau))


@dataclass
class Track:
    """One face over time. `id` is -1 until the track is confirmed."""

    box: np.ndarray
    id: int = -1
    hits: int = 1
    missed: int = 0
    probs: np.ndarray | None = field(default=None, repr=False)
    stamp: float | None = None
    #: the face as last reported (detected or carried), the stamp it was last detected at, and how it
    #: looked then (`fer_ros.vision.carry`)
    face: Face | None = field(default=None, repr=False)
    seen: float | None = None
    appearance: np.ndarray | None = field(default=None, repr=False)
    #: the visual tracker failed since the last detection: report nothing until it is detected again
    lost: bool = False
    #: the grey patches of its last LOOKS detections (the appearance check)
    looks: list = field(default_factory=list, repr=False)

    @property
    def confirmed(self) -> bool:
        return self.id >= 0

    def smooth(self, raw: np.ndarray, stamp: float, tau: float) -> np.ndarray:
        """Fold this frame's probabilities into the average and return it. A stamp earlier than the last
        one (a bag played again, a clock reset) restarts the average from `raw`."""
        raw = np.asarray(raw, np.float32)
        if self.probs is None or self.stamp is None or stamp < self.stamp:
            self.probs = raw.copy()
        else:
            alpha = ema_alpha(stamp - self.stamp, tau)
            self.probs = (1.0 - alpha) * self.probs + alpha * raw
        self.stamp = stamp
        return self.probs


class Tracker:
    """Assigns each frame's detections to tracks (see the module docstring)."""

    def __init__(self, iou_threshold: float = 0.3, max_distance: float = 0.5, max_missed: int = 5,
                 min_hits: int = 2, min_likeness: float = 0.4):
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance
        self.max_missed = max_missed
        self.min_hits = min_hits
        self.min_likeness = min_likeness
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again from 1."""
        self.tracks: list[Track] = []
        self.next_id = 1

    def end_all(self) -> None:
        """End every track (a scene cut): the faces after it get new ids, counting on."""
        self.tracks = []

    def update(self, boxes: np.ndarray, stamp: float | None = None, min_hits: int | None = None,
               looks: list | None = None) -> list[Track]:
        """Advance one frame with its (N, 4) x, y, w, h detections; the track of each detection, in order.
        `min_hits` replaces the tracker's for this frame (1: a still image's faces are confirmed at once);
        `looks` (one grey patch or None per detection) enables the appearance check."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        looks = list(looks) if looks is not None else [None] * len(boxes)
        pairs = self._associate(boxes, looks)
        matched = [None] * len(boxes)
        for t, d in pairs:
            track = self.tracks[t]
            track.box, track.missed = boxes[d].copy(), 0
            track.hits += 1
            matched[d] = track
        paired = {t for t, _ in pairs}
        kept = []
        for i, track in enumerate(self.tracks):
            if i not in paired:
                track.missed += 1
                if not track.confirmed or track.missed > self.max_missed:
                    continue
            kept.append(track)
        for d, box in enumerate(boxes):
            if matched[d] is None:
                matched[d] = Track(box.copy())
                kept.append(matched[d])
        for track, look in zip(matched, looks, strict=True):
            track.seen, track.lost = stamp, False
            if look is not None:
                track.looks = [*track.looks[-(LOOKS - 1):], look]
            if not track.confirmed and track.hits >= (min_hits or self.min_hits):
                track.id, self.next_id = self.next_id, self.next_id + 1
        self.tracks = kept
        return matched

    def carry(self, track: Track, box: np.ndarray) -> Face:
        """Move an undetected track to where the visual tracker found it; the face it carries there
        (landmarks moved with the box, `carried` set)."""
        box, old, face = np.asarray(box, np.float32), track.box, track.face
        scale = float(box[2]) / max(float(old[2]), 1e-6)
        marks = None if face.landmarks is None else \
            ((face.landmarks - (old[:2] + old[2:] / 2)) * scale + box[:2] + box[2:] / 2).astype(np.float32)
        track.box, track.missed = box, 0
        track.face = replace(face, box=track.box.copy(), landmarks=marks, carried=True)
        return track.face

    def _associate(self, boxes: np.ndarray, looks: list) -> list[tuple[int, int]]:
        """(track index, detection index) pairs: greedy by IoU, then by centre distance; only pairs that look alike."""
        if not self.tracks or not len(boxes):
            return []
        old = np.array([t.box for t in self.tracks], np.float32)
        unlike = np.array([[bool(t.looks) and look is not None and max(likeness(a, look) for a in t.looks)
                            < self.min_likeness for look in looks] for t in self.tracks])
        pairs: list[tuple[int, int]] = []
        _greedy(np.where(unlike, np.inf, -iou(old, boxes)), -max(self.iou_threshold, 1e-9), pairs)
        if self.max_distance <= 0.0 or len(pairs) == min(len(old), len(boxes)):
            return pairs
        oc, bc = old[:, :2] + old[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
        osz, bsz = np.sqrt(old[:, 2] * old[:, 3]), np.sqrt(boxes[:, 2] * boxes[:, 3])
        ratio = osz[:, None] / np.maximum(bsz[None, :], 1e-6)
        dist = np.linalg.norm(oc[:, None] - bc[None, :], axis=2) / np.maximum(osz[:, None], bsz[None, :])
        dist[(ratio < 0.5) | (ratio > 2.0) | unlike] = np.inf
        _greedy(dist, self.max_distance, pairs)
        return pairs


def _greedy(cost: np.ndarray, max_cost: float, pairs: list[tuple[int, int]]) -> None:
    """Append (row, column) pairs in rising cost up to `max_cost`, each row and column used once."""
    used_t, used_d = {t for t, _ in pairs}, {d for _, d in pairs}
    for t, d in zip(*np.unravel_index(np.argsort(cost, axis=None, kind="stable"), cost.shape), strict=True):
        if cost[t, d] > max_cost:
            break
        if t not in used_t and d not in used_d:
            pairs.append((int(t), int(d)))
            used_t.add(t)
            used_d.add(d)
