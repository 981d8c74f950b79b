"""Dataset loaders: FER2013 CSV, FER+ votes and image folders, as 48x48 grey crops.

Every loader returns a `Dataset` of uint8 crops; `fer_ros.preprocess.to_input` turns them
into model input, exactly as at inference time. Images that are not face crops go through
the runtime's face detection and alignment (`fer_ros.vision.faces`, `fer_ros.vision.align`).
"""

import contextlib
import csv
import functools
import gzip
import io
import sys
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..classes import FER7, FERPLUS8, canonical
from ..errors import DataError, FerRosWarning, ImageError
from ..preprocess import INPUT_SIZE
from ..vision.encodings import IMAGE_SUFFIXES, read_image

FER2013_SPLITS = ("Training", "PublicTest", "PrivateTest")
# FER+ vote columns, in file order, mapped to our class names (unknown and NF are not classes)
_FERPLUS_COLUMNS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
#: reasons in `Dataset.skipped` that are by design, not bad input: FER+ rows marked not-a-face or without an
#: emotion vote, and classes the model does not have; any other skip means the run was not complete (exit 1)
EXPECTED_SKIPS = ("not a face", "no emotion votes", "class unknown to the model")
#: rows parsed per np.fromstring call (a bad row costs a row-by-row parse of its chunk only)
_CHUNK = 1024


@dataclass
class Dataset:
    """Face crops with integer labels (N,) or soft targets (N, C) over `classes`."""

    images: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]
    source: str
    skipped: Counter = field(default_factory=Counter)
    rows: np.ndarray | None = None  # each crop's data row in its CSV (0-based, header excluded)
    #: image folders: how many images were taken as crops as they are, and how many through face detection
    framing: Counter = field(default_factory=Counter)
    #: image folders: each crop's file, relative to the folder (for grouping by performer or film)
    files: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels: the majority vote when the targets are soft."""
        return self.targets.argmax(1) if self.targets.ndim == 2 else self.targets

    def counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)))}

    @property
    def skipped_bad(self) -> int:
        """How many rows or images were skipped as bad or unusable (not by design: see EXPECTED_SKIPS)."""
        return sum(n for why, n in self.skipped.items() if not why.startswith(EXPECTED_SKIPS))


@contextlib.contextmanager
def _open_text(path: Path):
    """A data file as text, by its content: gzip when it is named .gz. Everything read inside the `with` that is
    not what the name says (plain text named .gz, a cut or damaged gzip, a binary file, NUL bytes) is a
    DataError naming the file: the one boundary for the bytes of CSV inputs."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        raw = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read the data file ({e.strerror or e})") from None
    with raw:
        head = raw.read(2)
        raw.seek(0)
        gz = head == b"\x1f\x8b"
        if path.suffix == ".gz" and not gz:
            raise DataError(f"{path}: named .gz but not gzip-compressed (it starts with {head!r}); if it is a plain "
                            "CSV, rename it without .gz")
        if gz and path.suffix != ".gz":
            raise DataError(f"{path}: gzip-compressed but not named .gz; rename it to {path.name}.gz")
        stream = io.TextIOWrapper(gzip.GzipFile(fileobj=raw) if gz else raw, encoding="utf-8", newline="")
        try:
            yield stream
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            why = "cut short" if isinstance(e, EOFError) else f"damaged: {e}"
            raise DataError(f"{path}: the gzip data is {why}; download or copy the file again") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a text CSV (byte {e.object[e.start]:#04x} is not UTF-8): a binary file? "
                            "give a FER2013 or FER+ CSV") from None
        except csv.Error as e:
            raise DataError(f"{path}: not a CSV ({e}); give a FER2013 or FER+ CSV") from None


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
        rows = list(_progress(reader, f"reading {path.name}", " rows"))
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
    # parse the well-formed rows a chunk at a time; a chunk with a bad value (say "12x") is parsed row by row
    good = np.flatnonzero(ok)
    for start in _progress(range(0, len(good), _CHUNK), f"parsing {path.name}", " chunks"):
        chunk = good[start:start + _CHUNK]
        px = _parse_many(texts[start:start + len(chunk)], len(chunk) * n_px)
        if px is not None:
            images[chunk] = px.reshape(-1, INPUT_SIZE, INPUT_SIZE)
        else:
            ok[chunk] = False
    for i in np.flatnonzero(~ok):
        if len(rows[i]) == len(header):
            crop = _parse_pixels(rows[i][ip])
            if crop is None:
                bad.append((i + 2, f"bad pixels: expected {n_px} grey levels 0..255"))
            else:
                images[i], ok[i] = crop, True
    return _Table(images, labels, usage, ok, sorted(bad))


def _progress(items, desc: str, unit: str):
    """`items` with a progress bar on stderr while a dataset loads, on a terminal only (tqdm's disable=None),
    so logs and captured output get none; FER2013 takes seconds to read and parse."""
    return tqdm(items, desc=desc, unit=unit, unit_scale=True, leave=False, disable=None, file=sys.stderr,
                mininterval=0.5)


def _parse_many(texts: list[str], n: int) -> np.ndarray | None:
    """The grey levels of several rows' pixel strings, or None if any is not a number 0..255."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns, and stops, at a bad value
            px = np.fromstring(" ".join(texts), dtype=np.int32, sep=" ")
    except ValueError:
        return None
    return px if px.size == n and 0 <= px.min() and px.max() <= 255 else None


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


#: how `load_image_folder` frames an image: auto = as a crop when it is the model's input size, else detect
CROP_MODES = ("auto", "crops", "faces")
#: the label of an image from an unlabelled folder
UNLABELLED = -1


def load_image_folder(root: str | Path, classes: tuple[str, ...] = FER7, framer=None, size: int = INPUT_SIZE,
                      crops: str = "auto", labelled: bool = True) -> Dataset:
    """One sub-folder per class (CK+, JAFFE style; names matched to ours, others reported), or with
    labelled=False every image under `root`, each labelled UNLABELLED.

    crops="auto" takes images of the model's input size (size x size: face crops such as CK+48's) as they
    are, and frames the face in any other with `framer` (a `fer_ros.framing.Framer`: the pipeline's detector,
    alignment, margin and minimum face size; default: the shipped parameters), the largest when there are
    several; an image with none is skipped. "crops" takes every image as a crop (resized), "faces" frames
    every one. `framing` counts which was done; `files` holds each crop's path relative to `root`.
    """
    if crops not in CROP_MODES:
        raise DataError(f"unknown crop mode {crops!r}: choose one of {', '.join(CROP_MODES)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of {'class sub-folders' if labelled else 'images'}")
    if framer is None and crops != "crops":
        from ..config import load_config
        from ..framing import Framer

        framer = Framer(load_config(), size)
    skipped, framing, images, labels, names, oblong = Counter(), Counter(), [], [], [], []
    if labelled:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        if not folders:
            raise DataError(f"{root}: no class sub-folders (expected e.g. {root}/happy/*.jpg)")
    else:
        folders = [root]
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        name = canonical(folder.name) if labelled else None
        if labelled and name not in classes:
            skipped[f"class unknown to the model: {folder.name}"] += len(files)
            continue
        for p in _progress(files, f"framing {root.name}/{folder.name if labelled else ''}", " images"):
            try:
                img = read_image(p)  # strict: a truncated JPEG is unreadable, not a grey-filled face
            except ImageError:
                skipped["unreadable image"] += 1
                continue
            if crops == "crops" or (crops == "auto" and img.shape[:2] == (size, size)):
                grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                crop = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
                framing["as crops"] += 1
                if max(img.shape[:2]) > 1.25 * min(img.shape[:2]):  # a face crop is about square
                    oblong.append(f"{p.name} is {img.shape[1]}x{img.shape[0]}")
            else:
                crop = framer.largest(img)
                if crop is None:
                    skipped["no face found"] += 1
                    continue
                framing[f"face found by {framer.detector.name}"] += 1
            images.append(crop)
            labels.append(classes.index(name) if labelled else UNLABELLED)
            names.append(p.relative_to(root).as_posix())
    if not images:
        raise DataError(f"{root}: no usable images ({dict(skipped)})")
    if oblong:
        warnings.warn(FerRosWarning(f"{root}: every image is taken as a face crop, but {len(oblong)} of "
                                    f"{framing['as crops']} are not square ({oblong[0]}): full photos? To find the "
                                    "face in each, use --crops faces (or auto)"), stacklevel=2)
    return Dataset(np.stack(images), np.array(labels, np.int64), tuple(classes), root.name, skipped,
                   framing=framing, files=np.array(names))


def load_dataset(path: str | Path, split: str | None = None, pixels: str | Path | None = None,
                 soft: bool = False, skip_bad: bool = False, classes: tuple[str, ...] = FER7,
                 framer=None, crops: str = "auto") -> Dataset:
    """Pick the loader from the path: FER+ votes CSV (needs `pixels`), FER2013 CSV, or image folder
    (framed by `framer` and `crops`: see load_image_folder)."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path, classes, framer, crops=crops)
    with _open_text(path) as f:
        header = f.readline()
    if header.startswith("Usage,Image name"):
        if pixels is None:
            raise DataError(f"{path}: FER+ votes need the FER2013 pixels: pass --pixels fer2013.csv.gz")
        return load_ferplus(path, pixels, split, soft=soft, skip_bad=skip_bad)
    return load_fer2013(path, split, skip_bad=skip_bad)
