"""Ground-truth labels for a bag replay: a CSV matched to the image frames, and the scores against them.

A header row names the format ('#' lines are comments):

- ``start,end,label``: intervals in seconds from the bag start, ``start <= t < end`` (overlapping intervals
  must agree on the label);
- ``stamp,label``: one frame per row, by its header.stamp in seconds (``sec + nanosec / 1e9``, within 1 ms);
- ``frame,label``: one frame per row, by its index on the image topic (from 0).

A label is an expression (any name `fer_ros.classes.canonical` knows: happy, Happiness, ...),
``face`` (a face whose expression is not given: scored for detection only) or ``none`` /
``no_face`` (no face in the frame: scored for detection). Frames no row covers are not scored. A frame
labelled twice with different labels is an error; `Labels.used` records which rows matched a frame, so a
replay can say which rows lie outside the bag.
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
        self._frames = {k[0]: i for i, k in enumerate(self.keys)}
        self._order = sorted(range(len(self.keys)), key=lambda i: self.keys[i][0])
        self._stamps = [self.keys[i][0] for i in self._order]
        #: rows (indices into keys) that matched a frame
        self.used: set[int] = set()
        self._check_conflicts()

    def match(self, index: int, stamp_s: float, since_start_s: float) -> str | None:
        """The label of a frame (its index on the topic, header stamp, seconds from bag start), or None."""
        if self.kind == "frame":
            row = self._frames.get(index)
        elif self.kind == "stamp":
            i = bisect.bisect_left(self._stamps, stamp_s - STAMP_TOLERANCE_S)
            ok = i < len(self._stamps) and self._stamps[i] <= stamp_s + STAMP_TOLERANCE_S
            row = self._order[i] if ok else None
        else:
            rows = [i for i, (start, end) in enumerate(self.keys) if start <= since_start_s < end]
            self.used.update(rows)
            row = rows[0] if rows else None
        if row is None:
            return None
        self.used.add(row)
        return self.labels[row]

    def unused_lines(self) -> list[int]:
        """The lines of rows that matched no frame so far."""
        return [line for i, line in enumerate(self.lines) if i not in self.used]

    def _check_conflicts(self) -> None:
        """DataError naming both lines where one frame would get two different labels."""
        order = self._order
        for a, b in zip(order, order[1:]):  # frames and stamps: neighbours in key order
            if self.kind == "frame" and self.keys[a] == self.keys[b] or \
                    self.kind == "stamp" and self.keys[b][0] - self.keys[a][0] <= 2 * STAMP_TOLERANCE_S:
                self._conflict(a, b)
        if self.kind == "interval":
            active: list[int] = []  # earlier intervals (by start) still open at this one's start
            for b in order:
                active = [a for a in active if self.keys[a][1] > self.keys[b][0]]
                for a in active:
                    self._conflict(a, b)
                active.append(b)

    def _conflict(self, a: int, b: int) -> None:
        if self.labels[a] == self.labels[b]:
            return
        a, b = sorted((a, b))
        key, line = self.keys[b], self.lines[a]
        if self.kind == "frame":
            subject = f"frame {key[0]}"
        elif self.kind == "stamp":
            subject = f"stamp {key[0]} (within 2 ms of line {line}'s: one frame matches both)"
        else:
            subject = f"the interval {key[0]},{key[1]} (it overlaps line {line}'s)"
        raise DataError(f"{self.path}:{self.lines[b]}: {subject} is labelled {self.labels[b]!r} here but "
                        f"{self.labels[a]!r} on line {line}; keep one label per frame")

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
