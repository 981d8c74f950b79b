"""Ground-truth labels for a bag replay: a CSV matched to the image frames, and the scores against them.

A header row names the format ('#' lines are comments):

- ``start,end,label``: intervals in seconds from the bag start, ``start <= t < end`` (the first row covering
  a frame wins);
- ``stamp,label``: one frame per row, by its header.stamp in seconds (``sec + nanosec / 1e9``, within 1 ms);
- ``frame,label``: one frame per row, by its index on the image topic (from 0).

A label is an expression (any name `fer_ros.classes.canonical` knows: happy, Happiness, ...),
``face`` (a face whose expression is not given: scored for detection only) or ``none`` /
``no_face`` (no face in the frame: scored for detection). Frames no row covers are not scored.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import canonical
from ..errors import DataError
from ..metrics import classification_report

FACE = "face"
NO_FACE = "no_face"
_NO_FACE_NAMES = {"none", "no_face", "noface", "no-face", "no face"}
_FORMATS = {("start", "end", "label"): "interval", ("stamp", "label"): "stamp", ("frame", "label"): "frame"}
STAMP_TOLERANCE_S = 1e-3


@dataclass
class Labels:
    """Rows of a label file: keys (interval bounds, stamps or frame indices) and labels, in file order."""

    path: str
    kind: str  # "interval", "stamp" or "frame"
    keys: list[tuple[float, ...]]
    labels: list[str]
    lines: list[int]

    def __post_init__(self):
        self._frames = {k[0]: label for k, label in zip(self.keys, self.labels, strict=True)}
        order = sorted(range(len(self.keys)), key=lambda i: self.keys[i][0])
        self._stamps = [self.keys[i][0] for i in order]
        self._stamp_labels = [self.labels[i] for i in order]

    def match(self, index: int, stamp_s: float, since_start_s: float) -> str | None:
        """The label of a frame (its index on the topic, header stamp, seconds from bag start), or None."""
        if self.kind == "frame":
            return self._frames.get(index)
        if self.kind == "stamp":
            i = bisect.bisect_left(self._stamps, stamp_s - STAMP_TOLERANCE_S)
            ok = i < len(self._stamps) and self._stamps[i] <= stamp_s + STAMP_TOLERANCE_S
            return self._stamp_labels[i] if ok else None
        covering = (label for (start, end), label in zip(self.keys, self.labels, strict=True)
                    if start <= since_start_s < end)
        return next(covering, None)

    def check(self, classes: tuple[str, ...]) -> None:
        """DataError naming the line of an expression label that is not one of the model's classes."""
        for label, line in zip(self.labels, self.lines, strict=True):
            if label not in (FACE, NO_FACE) and label not in classes:
                raise DataError(f"{self.path}:{line}: label {label!r} is not a class of the model "
                                f"({', '.join(classes)}), nor face / none")


def read_labels(path: str | Path) -> Labels:
    """Parse a label CSV; DataError names the file and line of anything wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"{path}: cannot read the labels: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text file of labels (byte {err.start} is not UTF-8); give a CSV of "
                        "frame,label rows") from None
    rows = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{path}: no labels")
    line, header = rows[0]
    kind = _FORMATS.get(tuple(c.strip().lower() for c in header))
    if kind is None:
        raise DataError(f"{path}:{line}: the header must be one of "
                        f"{' | '.join(','.join(f) for f in _FORMATS)}, not {','.join(header)}")
    keys, labels, lines = [], [], []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        try:
            key = tuple(int(v) if kind == "frame" else float(v) for v in row[:-1])
        except ValueError:
            what = "a frame index" if kind == "frame" else "a time in seconds"
            raise DataError(f"{path}:{line}: {','.join(row[:-1])} is not {what}") from None
        if kind == "interval" and not key[0] < key[1]:
            raise DataError(f"{path}:{line}: the interval end {key[1]} is not after its start {key[0]}")
        keys.append(key)
        labels.append(_label(row[-1], f"{path}:{line}"))
        lines.append(line)
    return Labels(str(path), kind, keys, labels, lines)


def _label(name: str, where: str) -> str:
    name = name.strip()
    if name.lower() in _NO_FACE_NAMES:
        return NO_FACE
    if name.lower() == FACE:
        return FACE
    label = canonical(name)
    if label is None:
        raise DataError(f"{where}: unknown label {name!r}: use an expression name, face, or none")
    return label


def score(truth: list[str], smoothed: list[str | None], raw: list[str | None], classes: tuple[str, ...]) -> dict:
    """Scores of the labelled frames: face detection, and the smoothed and the raw expression.

    truth: the label of each frame; smoothed / raw: the class of its largest face, None when no face
    was found. A missed face counts as a wrong expression (predicted ``no_face``).
    """
    has_face = [t != NO_FACE for t in truth]
    found = [p is not None for p in smoothed]
    out = {"frames": len(truth),
           "detection": classification_report(np.array(has_face, int), np.array(found, int), (NO_FACE, FACE))}
    expr = [i for i, t in enumerate(truth) if t not in (FACE, NO_FACE)]
    ext = (*classes, NO_FACE)
    y_true = np.array([ext.index(truth[i]) for i in expr], int)
    for name, pred in (("smoothed", smoothed), ("raw", raw)):
        out[f"expression_{name}"] = classification_report(
            y_true, np.array([ext.index(pred[i] or NO_FACE) for i in expr], int), ext)
    out["smoothing_gain"] = {k: out["expression_smoothed"][k] - out["expression_raw"][k]
                             for k in ("accuracy", "macro_f1")}
    return out
