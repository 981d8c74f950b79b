"""The visual tracker: carries a face from one frame to the next when no detector found it.

Pyramidal Lucas-Kanade optical flow follows corner points inside the face's box from the previous
frame; points whose backward flow does not come back within a pixel are dropped. The median
displacement moves the box and the median change of the points' spread scales it. The moved box
must still look like the face did when it was last detected (normalised cross-correlation of a small
grey patch with the one remembered then), so a face that left (a cut, a turned head, a hand in
front) is let go at once rather than carried over the background. Work is done on a grey copy of
each frame whose longer side is at most `max_side` pixels.
"""

import cv2
import numpy as np

#: side (px) of the grey patch a face is compared by
PATCH = 24


class Carrier:
    """Keeps the previous frame; `move` carries a box from it into the current one."""

    def __init__(self, max_side: int = 640, min_points: int = 6, min_similarity: float = 0.6):
        self.max_side, self.min_points, self.min_similarity = max_side, min_points, min_similarity
        self.previous: np.ndarray | None = None
        self.current: np.ndarray | None = None
        self.scale = 1.0  # small-copy pixels per source pixel

    def next_frame(self, image: np.ndarray) -> None:
        """Take this frame (BGR or grey uint8) as the current one; the current one becomes the previous."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.max_side / max(grey.shape[:2]))
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        if self.current is not None and self.current.shape != grey.shape:
            self.current = None  # the stream changed size: nothing to flow from
        self.previous, self.current, self.scale = self.current, grey, scale

    def reset(self) -> None:
        self.previous = self.current = None

    def patch(self, box: np.ndarray) -> np.ndarray | None:
        """The current frame's grey patch of a source-pixel box (PATCH x PATCH float32), or None if outside."""
        return _patch(self.current, np.asarray(box, np.float64) * self.scale)

    def move(self, box: np.ndarray, appearance: np.ndarray | None) -> tuple[np.ndarray, float] | None:
        """(the box carried from the previous frame into the current one, its similarity to `appearance`),
        or None when the face cannot be followed or no longer looks like `appearance`."""
        if self.previous is None or self.current is None or appearance is None:
            return None
        x, y, w, h = np.asarray(box, np.float64) * self.scale
        x0, y0 = int(max(0, x + 0.15 * w)), int(max(0, y + 0.15 * h))
        x1, y1 = int(min(self.previous.shape[1], x + 0.85 * w)), int(min(self.previous.shape[0], y + 0.85 * h))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        corners = cv2.goodFeaturesToTrack(self.previous[y0:y1, x0:x1], 40, 0.01, max(2.0, w / 20))
        if corners is None or len(corners) < self.min_points:
            return None
        p0 = (corners.reshape(-1, 2) + (x0, y0)).astype(np.float32)
        window = (max(9, int(w / 6) | 1),) * 2
        p1, ok, _ = cv2.calcOpticalFlowPyrLK(self.previous, self.current, p0, None, winSize=window, maxLevel=3)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(self.current, self.previous, p1, None, winSize=window,
                                                    maxLevel=3)
        good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (np.linalg.norm(back - p0, axis=1) < 1.0)
        if good.sum() < max(self.min_points, len(p0) // 2):
            return None
        a, b = p0[good], p1[good]
        shift = np.median(b - a, axis=0)
        spread_a, spread_b = np.linalg.norm(a - a.mean(0), axis=1), np.linalg.norm(b - b.mean(0), axis=1)
        zoom = float(np.clip(np.median(spread_b[spread_a > 1] / spread_a[spread_a > 1]), 0.8, 1.25)) \
            if (spread_a > 1).sum() >= self.min_points else 1.0
        cx, cy = x + w / 2 + shift[0], y + h / 2 + shift[1]
        moved = np.array([cx - zoom * w / 2, cy - zoom * h / 2, zoom * w, zoom * h])
        seen = _patch(self.current, moved)
        if seen is None:
            return None
        similarity = likeness(seen, appearance)
        if similarity < self.min_similarity:
            return None
        return (moved / self.scale).astype(np.float32), similarity


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two same-sized grey patches (`Carrier.patch`; 0 when either is flat): the
    likeness check of the visual tracker and of the tracker's association."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / norm if norm > 1e-6 else 0.0


def _patch(grey: np.ndarray | None, box: np.ndarray) -> np.ndarray | None:
    if grey is None:
        return None
    x, y, w, h = box
    x0, y0, x1, y1 = int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))
    if x0 < 0 or y0 < 0 or x1 > grey.shape[1] or y1 > grey.shape[0]:
        # a face partly out of the frame is compared on the part inside, padded by its edge
        pad = max(-x0, -y0, x1 - grey.shape[1], y1 - grey.shape[0], 0)
        if min(x1, grey.shape[1]) - max(x0, 0) < w / 2 or min(y1, grey.shape[0]) - max(y0, 0) < h / 2:
            return None
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return cv2.resize(grey[y0:y1, x0:x1], (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
