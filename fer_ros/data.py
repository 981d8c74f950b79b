"""Dataset loaders: FER2013 CSV, FER+ votes and image folders, as 48x48 grey crops.

Every loader returns a `Dataset` of uint8 crops; `fer_ros.preprocess.to_input` turns them
into model input, exactly as at inference time. Images that are not face crops go through
the runtime's face detection and alignment (`fer_ros.faces`, `fer_ros.align`).
"""

import csv
import functools
import gzip
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .classes import FER7, FERPLUS8, canonical
from .encodings import IMAGE_SUFFIXES
from .errors import DataError
from .preprocess import INPUT_SIZE

FER2013_SPLITS = ("Training", "PublicTest", "PrivateTest")
# FER+ vote columns, in file order, mapped to our class names (unknown and NF are not classes)
_FERPLUS_COLUMNS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")


@dataclass
class Dataset:
    """Face crops with integer labels (N,) or soft targets (N, C) over `classes`."""

    images: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]
    source: str
    skipped: Counter = field(default_factory=Counter)
    rows: np.ndarray | None = None  # each crop's data row in its CSV (0-based, header excluded)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels: the majority vote when the targets are soft."""
        return self.targets.argmax(1) if self.targets.ndim == 2 else self.targets

    def counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)))}


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    return io.TextIOWrapper(gzip.open(path), encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _bad(path: Path, row: int, why: str, skip_bad: bool, skipped: Counter) -> None:
    if not skip_bad:
        raise DataError(f"{path}: row {row}: {why} (pass --skip-bad to skip and count such rows)")
    skipped[why.split(":")[0]] += 1


def _parse_pixels(text: str) -> np.ndarray | None:
    try:
        px = np.array(text.split(), dtype=np.int32)
    except ValueError:
        return None
    if px.size != INPUT_SIZE * INPUT_SIZE or px.min(initial=0) < 0 or px.max(initial=0) > 255:
        return None
    return px.astype(np.uint8).reshape(INPUT_SIZE, INPUT_SIZE)


@dataclass
class _Table:
    """Every data row of a FER2013 CSV; rows with bad pixels have ok=False, bad labels label=-1."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    ok: np.ndarray
    bad: list[tuple[int, str]]  # (row number, why)


@functools.lru_cache(maxsize=2)
def _fer2013_table(path: Path, mtime: float) -> _Table:
    n_px = INPUT_SIZE * INPUT_SIZE
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or not {"emotion", "pixels"} <= set(header):
            raise DataError(f"{path}: not a FER2013 CSV (header must have emotion,pixels[,Usage])")
        ie, ip = header.index("emotion"), header.index("pixels")
        iu = header.index("Usage") if "Usage" in header else None
        rows = list(reader)
    labels = np.full(len(rows), -1, np.int64)
    usage = np.array([r[iu] if iu is not None and len(r) == len(header) else "" for r in rows])
    ok = np.zeros(len(rows), bool)
    bad, texts = [], []
    for i, r in enumerate(rows):
        if len(r) != len(header):
            bad.append((i + 2, f"bad row: {len(r)} fields, expected {len(header)}"))
            continue
        if r[ie].strip().isdigit() and int(r[ie]) < len(FER7):
            labels[i] = int(r[ie])
        else:
            bad.append((i + 2, f"unknown label: {r[ie]!r} (expected 0..6)"))
        ok[i] = r[ip].count(" ") == n_px - 1 and r[ip][:1].isdigit()
        if ok[i]:
            texts.append(r[ip])
    images = np.zeros((len(rows), INPUT_SIZE, INPUT_SIZE), np.uint8)
    if texts:  # parse the well-formed rows in one go, then the odd ones one by one
        px = np.fromstring(" ".join(texts), dtype=np.int32, sep=" ")
        if px.size == len(texts) * n_px and 0 <= px.min() and px.max() <= 255:
            images[ok] = px.reshape(-1, INPUT_SIZE, INPUT_SIZE)
        else:
            ok[:] = False
    for i in np.flatnonzero(~ok):
        if len(rows[i]) == len(header):
            crop = _parse_pixels(rows[i][ip])
            if crop is None:
                bad.append((i + 2, f"bad pixels: expected {n_px} grey levels 0..255"))
            else:
                images[i], ok[i] = crop, True
    return _Table(images, labels, usage, ok, sorted(bad))


def fer2013_table(path: Path, skip_bad: bool, skipped: Counter) -> _Table:
    """The parsed CSV (cached); raise on the first bad row unless skip_bad, else count them."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    table = _fer2013_table(path, path.stat().st_mtime)
    for row, why in table.bad:
        _bad(path, row, why, skip_bad, skipped)
    return table


def load_fer2013(path: str | Path, split: str | None = None, skip_bad: bool = False) -> Dataset:
    """FER2013 CSV (.csv or .csv.gz); `split` selects a Usage value (Training, PublicTest, ...)."""
    path = Path(path)
    if split is not None and split not in FER2013_SPLITS:
        raise DataError(f"unknown FER2013 split {split!r}: choose one of {', '.join(FER2013_SPLITS)}")
    skipped = Counter()
    t = fer2013_table(path, skip_bad, skipped)
    keep = t.ok & (t.labels >= 0) & ((t.usage == split) if split is not None else True)
    if not keep.any():
        raise DataError(f"{path}: no rows{f' in split {split}' if split else ''}")
    return Dataset(t.images[keep], t.labels[keep], FER7, f"{path.name}:{split or 'all'}", skipped,
                   np.flatnonzero(keep))


def load_ferplus(votes_path: str | Path, fer2013_path: str | Path, split: str | None = None,
                 soft: bool = True, skip_bad: bool = False) -> Dataset:
    """FER+ votes aligned row by row with FER2013's pixels; 8 classes (FER2013's 7 + contempt).

    soft=True gives the vote distribution over the 8 emotions as targets, else the majority
    label. Rows marked not-a-face (empty image name) or with no emotion votes are dropped.
    """
    votes_path, fer2013_path = Path(votes_path), Path(fer2013_path)
    skipped = Counter()
    order = [FERPLUS8.index(c) for c in _FERPLUS_COLUMNS]
    images, targets, rows = [], [], []
    table = fer2013_table(fer2013_path, skip_bad=True, skipped=Counter())
    with _open_text(votes_path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:2] != ["Usage", "Image name"] or len(header) < 10:
            raise DataError(f"{votes_path}: not a FER+ votes CSV (header Usage,Image name,neutral,...)")
        for i, row in enumerate(reader):
            row_no = i + 2
            if i >= len(table.ok):
                raise DataError(f"{votes_path}: row {row_no}: no matching row in {fer2013_path}")
            if row[0] != table.usage[i]:
                raise DataError(f"{votes_path}: row {row_no}: Usage {row[0]!r} but {fer2013_path} "
                                f"says {table.usage[i]!r}")
            if split is not None and row[0] != split:
                continue
            if not row[1].strip():
                skipped["not a face"] += 1
                continue
            try:
                v = np.array([float(x) for x in row[2:10]], np.float32)[np.argsort(order)]
            except ValueError:
                _bad(votes_path, row_no, "bad votes: not numbers", skip_bad, skipped)
                continue
            if not table.ok[i] or v.sum() == 0:
                skipped["no pixels" if not table.ok[i] else "no emotion votes"] += 1
                continue
            images.append(table.images[i])
            targets.append(v / v.sum())
            rows.append(i)
    if not images:
        raise DataError(f"{votes_path}: no face rows{f' in split {split}' if split else ''}")
    t = np.stack(targets)
    return Dataset(np.stack(images), t if soft else t.argmax(1), FERPLUS8,
                   f"{votes_path.name}:{split or 'all'}", skipped, np.array(rows))


def load_image_folder(root: str | Path, classes: tuple[str, ...] = FER7, detector=None,
                      size: int = INPUT_SIZE) -> Dataset:
    """One sub-folder per class (CK+, JAFFE style); names matched to ours, others reported.

    Full photos go through face detection (largest face) and alignment; small images where
    no face is found (<= 2x the input size) are taken as crops already.
    """
    from .align import crop_face
    from .faces import make_detector

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of class sub-folders")
    detector = detector or make_detector("haar")
    skipped, images, labels = Counter(), [], []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root}: no class sub-folders (expected e.g. {root}/happy/*.jpg)")
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        name = canonical(folder.name)
        if name not in classes:
            skipped[f"class unknown to the model: {folder.name}"] += len(files)
            continue
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                skipped["unreadable image"] += 1
                continue
            faces = detector.detect(img)
            if faces:
                crop = crop_face(img, max(faces, key=lambda f: f.box[2] * f.box[3]), size)
            elif max(img.shape[:2]) <= 2 * size:
                crop = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA)
            else:
                skipped["no face found"] += 1
                continue
            images.append(crop)
            labels.append(classes.index(name))
    if not images:
        raise DataError(f"{root}: no usable images ({dict(skipped)})")
    return Dataset(np.stack(images), np.array(labels, np.int64), tuple(classes), root.name, skipped)


def load_dataset(path: str | Path, split: str | None = None, pixels: str | Path | None = None,
                 soft: bool = False, skip_bad: bool = False, classes: tuple[str, ...] = FER7) -> Dataset:
    """Pick the loader from the path: FER+ votes CSV (needs `pixels`), FER2013 CSV, or image folder."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, classes)
    with _open_text(path) as f:
        header = f.readline()
    if header.startswith("Usage,Image name"):
        if pixels is None:
            raise DataError(f"{path}: FER+ votes need the FER2013 pixels: pass --pixels fer2013.csv.gz")
        return load_ferplus(path, pixels, split, soft=soft, skip_bad=skip_bad)
    return load_fer2013(path, split, skip_bad=skip_bad)
