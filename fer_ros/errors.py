"""Exceptions for bad input (the CLI prints them as one line and exits 2), and the one YAML reader.

Every message names what and where, says why, and, where there is something to do, what:
``x.yaml: not valid YAML: line 3, column 7: mapping values are not allowed here; fix that line``.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class FerRosError(Exception):
    """Base: a problem with the user's input, explained in one line naming what and where."""


class ModelFileError(FerRosError):
    """A model file is missing, corrupt, mismatched or does not describe itself."""


class DataError(FerRosError):
    """A dataset file, row or image is unreadable or inconsistent."""


class ImageError(FerRosError):
    """An image buffer is empty, truncated, wrongly strided or in an unknown encoding."""


class BagError(FerRosError):
    """A rosbag2 file is unreadable or lacks what was asked for."""


class FerRosWarning(UserWarning):
    """Something was skipped, ignored or assumed; the CLI prints it as one line on stderr."""


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(text).split())


def yaml_problem(err: yaml.YAMLError) -> str:
    """A PyYAML error as one line: "line L, column C: what is wrong" (its message spans several lines)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None)
    if problem is None:  # ReaderError (a byte YAML does not allow) and plain YAMLErrors
        reason = getattr(err, "reason", None)
        position = getattr(err, "position", None)
        if reason is not None and position is not None:
            char = getattr(err, "character", None)
            code = ord(char) if isinstance(char, str) else char
            code = f"byte {code:#04x}" if isinstance(code, int) else f"byte {code!r}"
            return f"character {position}: {code}: {one_line(reason)} (a binary file?)"
        return one_line(str(err).splitlines()[0] if str(err) else type(err).__name__)
    context = getattr(err, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + one_line(f"{problem} ({context})" if context else problem)


def read_yaml(path: str | Path, what: str, error: type[FerRosError] = FerRosError, hint: str | None = None):
    """The parsed content of a YAML file (None when empty); `error` for an unreadable file, one that is not
    UTF-8 text (a binary file) or not YAML, naming the file and, for a syntax error, its line and column.
    `hint` says what to do about a file that is not YAML (default: fix it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise error(f"{path}: cannot read the {what}: it is a folder; give a YAML file") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: the {what} is not text (byte 0x{data[e.start]:02x} at offset {e.start} is not "
                    f"UTF-8): a binary file? {hint or 'give a YAML file'}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {yaml_problem(e)}; {hint or f'fix the {what}'}") from None
