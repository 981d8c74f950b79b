"""Training data from several sources: FER2013 or FER+ CSVs, labelled and unlabelled photo folders.

A training config lists its sources (`TrainConfig.sources`), each a mapping of `Source`'s fields:

    sources:
      - {path: ../shared/data/fer2013/fer2013.csv.gz, split: Training}
      - {path: ../shared/data/extra/taiwan, split: train, group: '^(\\d\\d)', weight: 4}
      - {path: ../shared/data/extra/utkface_unlabelled, labelled: false, weight: 0.5}

Photos are framed by `fer_ros.framing.Framer`, the pipeline's own code path, and the crops of a folder are
computed once and cached (`crop_cache`): the cache file is named by a checksum of every image's name, size
and time and of the framing (detector, its model's checksum, alignment, margin), so any change frames
again, and it holds a checksum of its own arrays, checked when read. Folders split into train and dev by
group (a performer, a film: a regular expression's first group in the file name), so no group is in both.
"""

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..classes import FER7
from ..errors import DataError
from .data import UNLABELLED, Dataset, load_dataset, load_image_folder

#: bump when the crops of the same files and framing would change (a new framing code path)
CACHE_VERSION = 1
FOLDER_SPLITS = ("train", "dev", "all")


@dataclass
class Source:
    """One training or validation source."""

    path: str
    name: str | None = None  # short name in logs and metrics (default: the file or folder name)
    split: str | None = None  # CSVs: a Usage (Training, PublicTest); folders: train, dev or all
    weight: float = 1.0  # images drawn per epoch, as a multiple of the source's size (0.5: half, fresh each epoch)
    pixels: str | None = None  # FER2013 CSV holding the pixels, when path is the FER+ votes CSV
    soft: bool = False  # FER+: the vote distribution as targets
    labelled: bool = True  # False: a folder of photos without labels (targets from the teacher)
    crops: str = "auto"  # folders: see fer_ros.learning.data.load_image_folder
    group: str | None = None  # folders: regex on the file name whose first group is the image's group
    dev_fraction: float = 0.2  # folders: share of the groups held out as dev
    dev_seed: int = 0  # folders: which groups are dev
    distill: float | None = None  # the teacher's share of the targets (default: 1 unlabelled, config's otherwise)
    pseudo: float = 0.0  # unlabelled: keep the teacher's top class as a hard label where its probability >= this

    @classmethod
    def parse(cls, spec, where: str) -> "Source":
        """A Source from a config mapping (or a bare path); DataError naming `where` and the key at fault."""
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict) or "path" not in spec:
            raise DataError(f"{where}: a source is a path or a mapping with a path, not {spec!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise DataError(f"{where}: unknown source keys {unknown}; a source takes {', '.join(sorted(known))}")
        src = cls(**spec)
        checks = [(isinstance(src.path, str) and src.path, "path must be a file or folder"),
                  (isinstance(src.weight, int | float) and 0 < src.weight <= 100, "weight must be within 0..100"),
                  (0 < src.dev_fraction < 1, "dev_fraction must be within 0..1"),
                  (src.distill is None or 0 <= src.distill <= 1, "distill must be within 0..1"),
                  (0 <= src.pseudo < 1, "pseudo must be within 0..1 (0 = off)"),
                  (not src.pseudo or not src.labelled, "pseudo labels are for unlabelled sources"),
                  (src.group is None or _regex(src.group), f"group {src.group!r} is not a regular expression "
                                                           "with a group, e.g. '^(\\d\\d)'")]
        for ok, why in checks:
            if not ok:
                raise DataError(f"{where}: {why}")
        if not Path(src.path).exists():
            relative = "" if Path(src.path).is_absolute() else \
                f" (relative paths are taken from the working directory, {Path.cwd()}: run from the repository " \
                "root, or give --data)"
            raise DataError(f"{where}: {src.path}: no such file or folder{relative}; fix the path")
        folder = Path(src.path).is_dir()
        if folder and src.split not in (None, *FOLDER_SPLITS):
            raise DataError(f"{where}: a folder's split is one of {', '.join(FOLDER_SPLITS)}, not {src.split!r}")
        if folder and src.split in ("train", "dev") and not src.group:
            raise DataError(f"{where}: splitting {src.path} into train and dev needs a group (performer, film), "
                            "e.g. group: '^(\\d\\d)'")
        return replace(src, name=src.name or Path(src.path).name.split(".")[0] + (f":{src.split}" if src.split
                                                                                   else ""))


def _regex(text) -> bool:
    try:
        return isinstance(text, str) and re.compile(text).groups >= 1
    except re.error:
        return False


def groups_of(files, pattern: str) -> np.ndarray:
    """Each file's group: the first group of `pattern` searched in its name (a name it does not match is its
    own group)."""
    rx = re.compile(pattern)
    names = [Path(f).name for f in files]
    return np.array([m.group(1) if (m := rx.search(n)) else n for n in names])


def dev_groups(groups, fraction: float, seed: int) -> set[str]:
    """The groups held out as dev: round(fraction x groups), at least one, drawn with `seed`."""
    unique = sorted(set(groups))
    n = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    return set(np.random.default_rng(seed).permutation(unique)[:n].tolist())


def folder_digest(root: Path) -> str:
    """A checksum of every file's relative path, size and modification time under `root`."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _arrays_digest(images: np.ndarray, labels: np.ndarray, files: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update("\n".join(files.tolist()).encode())
    return h.hexdigest()


def framed_folder(src: Source, framer, classes: tuple[str, ...], cache: Path | None) -> Dataset:
    """A folder's crops, read from `cache` when the files and the framing are unchanged, else framed and cached."""
    root = Path(src.path)
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "files": folder_digest(root), "crops": src.crops,
                                     "labelled": src.labelled, "classes": classes,
                                     "framing": framer.signature() if framer else None},
                                    sort_keys=True).encode()).hexdigest()
    path = cache / f"{root.name}-{key[:16]}.npz" if cache else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            meta = json.loads(str(data["meta"]))
            if meta["sha256"] == _arrays_digest(data["images"], data["labels"], data["files"]):
                from collections import Counter

                return Dataset(data["images"], data["labels"], classes, root.name, Counter(meta["skipped"]),
                               framing=Counter(meta["framing"]), files=data["files"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # JSONDecodeError is a ValueError
            pass  # unreadable or damaged: frame again and overwrite it
    data = load_image_folder(root, classes, framer, framer.size if framer else 48, src.crops, src.labelled)
    if path is not None:
        meta = {"sha256": _arrays_digest(data.images, data.labels, data.files), "skipped": dict(data.skipped),
                "framing": dict(data.framing), "source": str(root)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=data.images, labels=data.labels, files=data.files, meta=np.array(json.dumps(meta)))
        tmp.replace(path)
    return data


def load_source(src: Source, framer=None, cache: Path | None = None, classes: tuple[str, ...] = FER7,
                max_rows: int = 0) -> Dataset:
    """The crops and targets of one source, its split applied; `max_rows` keeps the first N (quick runs)."""
    if Path(src.path).is_dir():
        data = framed_folder(src, framer, classes, cache)
        if src.split in ("train", "dev"):
            groups = groups_of(data.files, src.group)
            held = np.isin(groups, list(dev_groups(groups, src.dev_fraction, src.dev_seed)))
            keep = held if src.split == "dev" else ~held
            data = replace(data, images=data.images[keep], targets=data.targets[keep], files=data.files[keep])
    else:
        data = load_dataset(src.path, src.split, pixels=src.pixels, soft=src.soft, classes=classes)
    data = replace(data, source=src.name)
    if max_rows:
        data = subset(data, np.arange(min(max_rows, len(data))))
    return data


def subset(data: Dataset, index: np.ndarray) -> Dataset:
    """The crops of `data` at `index`, with their targets, rows and files."""
    return replace(data, images=data.images[index], targets=data.targets[index],
                   rows=None if data.rows is None else data.rows[index],
                   files=None if data.files is None else data.files[index])


def labelled(data: Dataset) -> np.ndarray:
    """Which crops carry a label (not UNLABELLED)."""
    return data.targets.ndim == 2 or data.targets != UNLABELLED


def epoch_index(sizes: list[int], weights: list[float], gen) -> "torch.Tensor":  # noqa: F821
    """Indices into the concatenated sources for one epoch, shuffled: round(weight x size) draws from each source,
    whole passes over it and then a random part without repeats (so weight 0.5 is a fresh half every epoch)."""
    import torch

    parts, offset = [], 0
    for size, weight in zip(sizes, weights, strict=True):
        n = round(weight * size)
        whole, rest = divmod(n, size)
        parts += [torch.randperm(size, generator=gen) + offset for _ in range(whole)]
        parts.append(torch.randperm(size, generator=gen)[:rest] + offset)
        offset += size
    index = torch.cat(parts)
    return index[torch.randperm(len(index), generator=gen)]
