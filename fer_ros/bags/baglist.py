"""Which bags a fleet replay reads: bag paths, globs, folders of bags and .txt files listing them.

A bag is a rosbag2 directory (with metadata.yaml, or holding a single .db3/.mcap file, as an interrupted
recording leaves it) or a bare .db3/.mcap file. Each bag gets a name, unique in the set, for its output folder.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

import yaml

from ..errors import BagError
from .bagio import IMAGE_TYPES

SUFFIXES = (".db3", ".mcap")
LIST_SUFFIX = ".txt"


def is_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix in SUFFIXES
    if not path.is_dir():
        return False
    if (path / "metadata.yaml").is_file():
        return True
    children = list(path.iterdir())
    return sum(c.suffix in SUFFIXES and c.is_file() for c in children) == 1 and \
        not any(c.is_dir() and is_bag(c) for c in children)


def is_fleet(args: list[str]) -> bool:
    """True when the command line names more than one bag, or a glob, a folder of bags or a list file."""
    if len(args) != 1:
        return True
    path = Path(args[0])
    return _is_glob(args[0]) or (path.is_dir() and not is_bag(path)) or \
        (path.is_file() and path.suffix == LIST_SUFFIX)


def find_bags(args: list[str]) -> list[Path]:
    """The bags the arguments name, in order, each once; BagError for an argument that names none."""
    found = {}
    for arg in args:
        for bag in _expand(arg, Path.cwd(), set()):
            found.setdefault(bag.resolve(), bag.resolve())
    return list(found)


def _expand(arg: str, base: Path, lists: set) -> list[Path]:
    if _is_glob(arg):
        pattern = arg if Path(arg).is_absolute() else str(base / arg)
        matches = [Path(m) for m in sorted(glob.glob(pattern))]
        bags = [b for m in matches for b in ([m] if is_bag(m) else _bags_in(m) if m.is_dir() else [])]
        if not bags:
            raise BagError(f"{arg}: the pattern matches no bags; check it, and quote it so the shell does not "
                           "expand it first")
        return bags
    path = Path(arg) if Path(arg).is_absolute() else base / arg
    if is_bag(path):
        return [path]
    if path.is_dir():
        bags = _bags_in(path)
        if not bags:
            raise BagError(f"{arg}: a folder that holds no bags (rosbag2 folders or .db3/.mcap files); give bags")
        return bags
    if path.is_file() and path.suffix == LIST_SUFFIX:
        if path.resolve() in lists:
            raise BagError(f"{arg}: lists itself, directly or through another list; remove that line")
        lines = [line.strip() for line in path.read_text().splitlines()]
        entries = [line for line in lines if line and not line.startswith("#")]
        if not entries:
            raise BagError(f"{arg}: lists no bags; write one bag, folder or pattern per line")
        return [b for e in entries for b in _expand(e, path.parent, lists | {path.resolve()})]
    if path.exists():
        raise BagError(f"{arg}: not a bag (a rosbag2 folder or a .db3/.mcap file), a folder of bags or a "
                       f"{LIST_SUFFIX} list of them")
    raise BagError(f"{arg}: no such bag, folder or list; check the path")


def _bags_in(folder: Path) -> list[Path]:
    return sorted(c for c in folder.iterdir() if is_bag(c))


def _is_glob(arg: str) -> bool:
    return any(c in arg for c in "*?[") and not Path(arg).exists()


def bag_name(bag: Path) -> str:
    """A bag's own name: its folder's, or its file's without the suffix."""
    return bag.stem if bag.is_file() else bag.name


def unique_names(bags: list[Path]) -> list[str]:
    """A folder name per bag: its own name, with a short hash of its path where two bags share one."""
    names = [bag_name(b) for b in bags]
    return [n if names.count(n) == 1 else f"{n}-{hashlib.sha256(str(b).encode()).hexdigest()[:8]}"
            for n, b in zip(names, bags, strict=True)]


def labels_for(bag: Path, folder: str | Path | None) -> Path | None:
    """`<bag name>.csv` in the labels folder, or beside the bag without one; None when there is none."""
    path = Path(folder or bag.parent) / f"{bag_name(bag)}.csv"
    return path if path.is_file() else None


def image_messages(bag: Path, topic: str | None = None) -> int | None:
    """The image messages a bag's metadata.yaml counts, on `topic` or its one image topic; None if unknown."""
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        topics = [(t["topic_metadata"]["name"], t["topic_metadata"]["type"], int(t["message_count"]))
                  for t in info["topics_with_message_count"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    counts = [n for name, kind, n in topics if (name == topic if topic else kind in IMAGE_TYPES)]
    return counts[0] if len(counts) == 1 else None
