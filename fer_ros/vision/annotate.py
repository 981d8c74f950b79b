"""Draw a FrameResult on a BGR image: boxes, ids, labels, landmarks and per-class probability bars.

Used for the ROS node's debug image, `fer-ros infer --save` and replay's MP4.
"""

import cv2
import numpy as np

from ..classes import FER7
from ..pipeline import FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: BGR colour per class (FER7 order; other classes cycle through it), unknown in grey
PALETTE = ((40, 40, 220), (40, 140, 40), (160, 60, 160), (40, 200, 240), (200, 120, 40), (240, 200, 40),
           (200, 200, 200))
UNKNOWN_COLOUR = (128, 128, 128)


def colour(label: str, classes: tuple[str, ...] = FER7) -> tuple[int, int, int]:
    if label in classes:
        return PALETTE[classes.index(label) % len(PALETTE)]
    return UNKNOWN_COLOUR


def annotate(image: np.ndarray, result: FrameResult, bars: bool = True, summary: bool = True) -> np.ndarray:
    """A BGR copy of `image` (BGR or grey) with the result drawn on it."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    scale = max(0.4, min(out.shape[:2]) / 900)
    thick = max(1, round(scale * 2))
    for face in result.faces:
        col = colour(face.label, result.classes)
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), col, thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for px, py in face.landmarks[~np.isnan(face.landmarks).any(axis=1)]:
                cv2.circle(out, (int(px), int(py)), thick + 1, col, -1, cv2.LINE_AA)
        if bars:
            _bars(out, face.probs, result.classes, (x, y, w, h))
        fs = float(np.clip(w / 220, 0.35, scale))
        _label(out, f"{face.track_id} {face.label} {face.confidence:.0%}", (x, y), col, fs, max(1, round(fs * 1.5)))
    if summary:
        text = f"{len(result.faces)} faces"
        if result.n_small:
            text += f" (+{result.n_small} small)"
        if "total" in result.timings:
            text += f"  {result.timings['total']:.1f} ms"
        _label(out, text, (0, int(24 * scale) + 4), (60, 60, 60), scale, thick)
    return out


def _label(img: np.ndarray, text: str, corner: tuple[int, int], col, scale: float, thick: int) -> None:
    """Text on a filled box whose bottom-left is `corner` (moved inside the image)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    x = min(max(corner[0], 0), max(0, img.shape[1] - tw - 4))
    y = min(max(corner[1], th + base + 4), img.shape[0])
    cv2.rectangle(img, (x, y - th - base - 4), (x + tw + 4, y), col, -1)
    ink = (0, 0, 0) if sum(col) > 380 else (255, 255, 255)
    cv2.putText(img, text, (x + 2, y - base - 2), FONT, scale, ink, thick, cv2.LINE_AA)


def _bars(img: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], box: tuple[int, int, int, int]) -> None:
    """One horizontal bar per class (3-letter names) in a panel as wide as the face: below it, else
    beside it (right, else left), so that it never hides the face's label above the box."""
    x, y, w, h = box
    height, width = img.shape[:2]
    row = int(np.clip(w / 9, 9, 18))
    fs = row / 30
    pw, ph = max(w, 8 * row), row * len(classes) + 2
    if y + h + 2 + ph <= height:
        px, py = int(np.clip(x, 0, max(0, width - pw))), y + h + 2
    else:
        px = x + w + 2 if x + w + 2 + pw <= width else max(0, x - pw - 2)
        py = int(np.clip(y, 0, max(0, height - ph)))
    panel = img[py:py + ph, px:px + pw]
    panel[...] = panel // 3  # darken the background for contrast
    name_w = cv2.getTextSize("www", FONT, fs, 1)[0][0] + 4
    for i, (name, p) in enumerate(zip(classes, probs, strict=True)):
        top = py + 1 + row * i
        cv2.putText(img, name[:3], (px + 2, top + row - 3), FONT, fs, (255, 255, 255), 1, cv2.LINE_AA)
        length = max(1, int((pw - name_w - 4) * float(p)))
        cv2.rectangle(img, (px + name_w, top + 2), (px + name_w + length, top + row - 2), colour(name, classes), -1)
