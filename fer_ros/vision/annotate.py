"""Draw a FrameResult on a BGR image: boxes, ids, labels, landmarks and per-class probability bars.

Used for the ROS node's debug image, `fer-ros infer --save` and replay's MP4. `layout` places each face's
label above its box and its panel of bars beside it where the panel covers no face, no label and no other
panel: below the box, else right, else left, at a smaller size when no full-size place is free (a close-up,
a crowd); a face with no free place at all gets no panel (its label still names the top class).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ..classes import FER7
from ..pipeline import FrameResult
from ..wording import plural

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: BGR colour per class (FER7 order; other classes cycle through it), unknown in grey
PALETTE = ((40, 40, 220), (40, 140, 40), (160, 60, 160), (40, 200, 240), (200, 120, 40), (240, 200, 40),
           (200, 200, 200))
UNKNOWN_COLOUR = (128, 128, 128)
#: bar row heights (px) a panel is tried at, largest first (the first at most the face width / 9)
ROWS = (18, 15, 12, 10, 8)


def colour(label: str, classes: tuple[str, ...] = FER7) -> tuple[int, int, int]:
    if label in classes:
        return PALETTE[classes.index(label) % len(PALETTE)]
    return UNKNOWN_COLOUR


@dataclass
class Layout:
    """Where things go, as (x0, y0, x1, y1) rectangles: the summary, each face's label and its panel (None: no
    free place), and the panels' bar row height."""

    summary: tuple[int, int, int, int] | None
    labels: list[tuple[int, int, int, int]]
    panels: list[tuple[int, int, int, int] | None]
    rows: list[int]


def annotate(image: np.ndarray, result: FrameResult, bars: bool = True, summary: bool = True) -> np.ndarray:
    """A BGR copy of `image` (BGR or grey) with the result drawn on it."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    scale, thick = _scale(out.shape)
    where = layout(result, out.shape, bars, summary)
    for face, label, panel, row in zip(result.faces, where.labels, where.panels, where.rows, strict=True):
        col = colour(face.label, result.classes)
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), col, thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for px, py in face.landmarks[~np.isnan(face.landmarks).any(axis=1)]:
                cv2.circle(out, (int(px), int(py)), thick + 1, col, -1, cv2.LINE_AA)
        fs = _label_scale(w, scale)
        _text(out, _face_text(face), label, col, fs, max(1, round(fs * 1.5)))
        if panel is not None:
            _bars(out, face.probs, result.classes, panel, row)
    if where.summary is not None:
        _text(out, _summary_text(result), where.summary, (60, 60, 60), scale, thick)
    return out


def layout(result: FrameResult, shape: tuple[int, ...], bars: bool = True, summary: bool = True) -> Layout:
    """Place the summary, the labels and the panels of `result` on an image of `shape` (see the module docstring)."""
    height, width = shape[:2]
    scale, thick = _scale(shape)
    boxes = [tuple(int(round(v)) for v in f.box) for f in result.faces]
    taken = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    top = None
    if summary:
        top = _text_rect(_summary_text(result), (0, int(24 * scale) + 4), scale, thick, width, height)
        taken.append(top)
    labels = []
    for face, (x, y, w, _) in zip(result.faces, boxes, strict=True):
        fs = _label_scale(w, scale)
        labels.append(_text_rect(_face_text(face), (x, y), fs, max(1, round(fs * 1.5)), width, height))
    taken += labels
    panels, rows = [], []
    n = len(result.classes)
    for box in boxes:
        panel, row = _place(box, n, taken, width, height) if bars else (None, 0)
        panels.append(panel)
        rows.append(row)
        if panel is not None:
            taken.append(panel)
    return Layout(top, labels, panels, rows)


def _place(box, n_classes: int, taken: list, width: int, height: int):
    """(the first free panel rectangle beside `box`, its row height), or (None, 0)."""
    x, y, w, h = box
    for row in ROWS:
        if row > max(ROWS[-1], w / 9):
            continue
        pw, ph = int(min(max(w, 8 * row), 14 * row)), row * n_classes + 2
        for px, py in ((x, y + h + 2), (x + w + 2, y), (x - pw - 2, y), (x + w - pw, y + h + 2),
                       (x + w + 2, y + h - ph), (x - pw - 2, y + h - ph)):
            px = int(np.clip(px, 0, max(0, width - pw))) if py >= y + h else px
            rect = (px, py, px + pw, py + ph)
            if px >= 0 and py >= 0 and px + pw <= width and py + ph <= height and not any(
                    _overlaps(rect, other) for other in taken):
                return rect, row
    return None, 0


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _scale(shape) -> tuple[float, int]:
    scale = max(0.4, min(shape[:2]) / 900)
    return scale, max(1, round(scale * 2))


def _label_scale(w: int, scale: float) -> float:
    return float(np.clip(w / 220, 0.35, scale))


def _face_text(face) -> str:
    return f"{face.track_id} {face.label} {face.confidence:.0%}"


def _summary_text(result: FrameResult) -> str:
    text = plural(len(result.faces), "face")
    if result.n_small:
        text += f" (+{result.n_small} small)"
    if "total" in result.timings:
        text += f"  {result.timings['total']:.1f} ms"
    return text


def _text_rect(text: str, corner: tuple[int, int], scale: float, thick: int, width: int, height: int):
    """The filled box (x0, y0, x1, y1) of a label whose bottom-left is `corner`, moved inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    x = min(max(corner[0], 0), max(0, width - tw - 4))
    y = min(max(corner[1], th + base + 4), height)
    return x, y - th - base - 4, x + tw + 4, y


def _text(img: np.ndarray, text: str, rect, col, scale: float, thick: int) -> None:
    x0, y0, x1, y1 = rect
    cv2.rectangle(img, (x0, y0), (x1, y1), col, -1)
    ink = (0, 0, 0) if sum(col) > 380 else (255, 255, 255)
    base = cv2.getTextSize(text, FONT, scale, thick)[1]
    cv2.putText(img, text, (x0 + 2, y1 - base - 2), FONT, scale, ink, thick, cv2.LINE_AA)


def _bars(img: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], rect, row: int) -> None:
    """One horizontal bar per class (3-letter names) in the panel `rect`, `row` px a class."""
    px, py, x1, y1 = rect
    pw = x1 - px
    fs = row / 30
    panel = img[py:y1, px:x1]
    panel[...] = panel // 3  # darken the background for contrast
    name_w = cv2.getTextSize("www", FONT, fs, 1)[0][0] + 4
    for i, (name, p) in enumerate(zip(classes, probs, strict=True)):
        top = py + 1 + row * i
        cv2.putText(img, name[:3], (px + 2, top + row - 3), FONT, fs, (255, 255, 255), 1, cv2.LINE_AA)
        length = max(1, int((pw - name_w - 4) * float(p)))
        cv2.rectangle(img, (px + name_w, top + 2), (px + name_w + length, top + row - 2), colour(name, classes), -1)
