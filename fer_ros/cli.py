"""`fer-ros` command line: one subcommand per module, imported only when chosen.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``. This module is the
boundary between the user and the commands, so every command gets, without doing anything for it:

- one line for anything that stops it (`error_line`): ``fer-ros CMD: error: WHAT/WHERE: WHY; WHAT TO DO``;
  an argparse error is one line too, and a FerRosWarning is one ``fer-ros CMD: warning: ...`` line;
- the exit status (`EXIT_OK`, `EXIT_SKIPPED`, `EXIT_FAILED`): 0 all done, 1 done but items were skipped,
  2 nothing done (bad input, a missing dependency or another error);
- a clear word when an optional dependency (torch, rosbags, ...) is missing, with what to install; and
  ``--help`` of such a command still works.

Commands use `check_output` for every output path before any work starts, and the `number` argparse
types for counts and sizes.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from . import __version__
from .errors import FerRosError, FerRosWarning, one_line

COMMANDS = {
    "train": ("fer_ros.learning.train", "train ARCH-1..4 from a YAML config (needs torch)"),
    "evaluate": ("fer_ros.learning.evaluate", "score a model on FER2013/FER+ CSVs or an image folder"),
    "export": ("fer_ros.learning.export", "export a checkpoint to ONNX, a TensorRT engine or int8 ONNX"),
    "infer": ("fer_ros.infer", "run the face pipeline on an image, folder, video or camera"),
    "bench": ("fer_ros.bench", "benchmark training, inference, the frame pipeline and replay"),
    "replay": ("fer_ros.bags.fleet", "run the node's pipeline over rosbag2 files and report accuracy and speed"),
    "models": ("fer_ros.vision.detector_model",
               "fetch the YuNet face detector into the user cache, or say which is used"),
    "bag": ("fer_ros.bags.bagtools", "rosbag2 tools without ROS: make a bag from a video, show bag info"),
}

#: exit statuses: everything done; done, but some items (rows, images, frames, messages) were skipped;
#: nothing done (bad input or options, a missing dependency, or an error that stopped the command)
EXIT_OK, EXIT_SKIPPED, EXIT_FAILED = 0, 1, 2

#: optional dependencies: top-level module -> (what it is, what to install)
OPTIONAL = {
    "torch": ("PyTorch", "pip install 'fer_ros[train]'"),
    "torchvision": ("torchvision", "pip install torchvision"),
    "onnx": ("the onnx package", "pip install 'fer_ros[train]'"),
    "onnxscript": ("onnxscript", "pip install 'fer_ros[train]'"),
    "matplotlib": ("matplotlib", "pip install 'fer_ros[train]' (or pip install matplotlib)"),
    "rosbags": ("rosbags", "pip install 'fer_ros[bag]'"),
    "tensorrt": ("TensorRT's Python module", "install JetPack's python3-libnvinfer or pip install tensorrt"),
    "cuda": ("cuda-python", "pip install 'fer_ros[tensorrt]'"),
}

#: what `check_output` accepts per kind of output file
IMAGE_SUFFIXES_OUT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES_OUT = (".mp4", ".m4v", ".mov", ".avi", ".mkv")  # all written with the mp4v codec
PLOT_SUFFIXES_OUT = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
_SUFFIXES = {"image": IMAGE_SUFFIXES_OUT, "video": VIDEO_SUFFIXES_OUT, "plot": PLOT_SUFFIXES_OUT,
             "json": (".json",), "model": (".onnx", ".engine", ".plan")}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (usage is one `--help` away) instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_FAILED, f"{self.prog}: error: {one_line(message)}; see {self.prog} --help\n")


def missing_dependency(err: BaseException) -> str | None:
    """"needs X, which is not installed: pip install ..." for a ModuleNotFoundError of an optional dependency."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    top = err.name.split(".")[0]
    if top not in OPTIONAL:
        return None
    what, install = OPTIONAL[top]
    return f"this needs {what} ({top}), which is not installed; {install}"


def error_line(command: str, err: BaseException) -> tuple[str, int]:
    """(the one line to print on stderr, the exit status) for an exception that stopped `command`."""
    prefix = f"fer-ros {command}: error: "
    missing = missing_dependency(err)
    if missing:
        return prefix + missing, EXIT_FAILED
    if isinstance(err, FerRosError):
        return prefix + one_line(err), EXIT_FAILED
    if isinstance(err, KeyboardInterrupt):
        return f"fer-ros {command}: interrupted", 130
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return prefix + f"{where}{one_line(err.strerror or err)}; check the path, its permissions and the free " \
                        "space", EXIT_FAILED
    if isinstance(err, RuntimeError) and str(err).startswith("Symlink loop from"):  # pathlib's resolve()
        where = str(err).removeprefix("Symlink loop from ").strip("'")
        return prefix + f"{where}: a loop of symbolic links (links that point at each other); fix or remove the " \
                        "link", EXIT_FAILED
    if isinstance(err, MemoryError):
        return prefix + "out of memory; use smaller input (fewer rows, frames or a smaller image)", EXIT_FAILED
    return prefix + (f"unexpected {type(err).__name__}: {one_line(err)}; this is a fer_ros bug, please report it "
                     "(FER_ROS_DEBUG=1 shows the traceback)"), EXIT_FAILED


# ---- argument types --------------------------------------------------------------------------------------------

def number(kind: type = int, lo: float | None = None, hi: float | None = None, above: float | None = None):
    """An argparse type: a finite `kind` (int or float) within lo..hi (None: unbounded) and, if given, greater
    than `above`; anything else is a one-line error saying what is wanted."""
    what = "a whole number" if kind is int else "a number"
    limits = [f">= {lo}" if lo is not None and hi is None else f"within {lo}..{hi}" if lo is not None else
              f"<= {hi}" if hi is not None else "", f"> {above}" if above is not None else ""]
    wanted = f"{what} {' and '.join(x for x in limits if x)}".strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if (not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi)
                or (above is not None and value <= above)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# ---- output paths ----------------------------------------------------------------------------------------------

def check_output(path: str | Path | None, option: str, kind: str, inputs=(), new: bool = False,
                 because: str = "") -> Path | None:
    """Check an output path before any work starts; FerRosError naming `option` if it cannot be written.

    kind: "image", "video", "plot", "json", "model" (a file with a suffix its writer supports), "folder" (a folder,
    created if missing) or "bag" (a folder that must not exist yet). Also: the place must be writable (a
    file is created there and removed), and the path must not be one of `inputs`. `new`: the path must not
    exist. `because` says why this kind, e.g. "the input is a video". Returns the path (None for None).
    """
    if path is None:
        return None
    if str(path) == "":
        raise FerRosError(f"{option}: empty path; give a file or folder to write")
    path = Path(path)
    for source in inputs:
        if source is not None and _same(path, Path(source)):
            raise FerRosError(f"{option} {path}: that is an input of this command; write elsewhere")
    if kind in _SUFFIXES:
        suffixes = _SUFFIXES[kind]
        a = f"{'an' if kind[0] in 'aeiou' else 'a'} {'JSON' if kind == 'json' else kind} file"
        why = f" ({because})" if because else ""
        if path.is_dir():
            raise FerRosError(f"{option} {path}: is a folder, not {a}{why}; give a file name ending in "
                              f"{', '.join(suffixes)}")
        if path.suffix.lower() not in suffixes:
            got = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
            raise FerRosError(f"{option} {path}: {got}, but this writes {a}{why}; use one of {', '.join(suffixes)}")
        if kind == "image" and not _have_image_writer(path):
            raise FerRosError(f"{option} {path}: this OpenCV cannot write {path.suffix} images; use .jpg or .png")
    elif kind in ("folder", "bag"):
        if path.exists() and not path.is_dir():
            raise FerRosError(f"{option} {path}: is a file; give a folder")
        if kind == "bag" and path.exists():
            raise FerRosError(f"{option} {path}: exists; remove it or choose another output path")
    else:
        raise ValueError(f"unknown output kind {kind!r}")
    if path.is_symlink() and not path.exists():
        raise FerRosError(f"{option} {path}: a symbolic link to nowhere (or a loop of links); remove it or write "
                          "elsewhere")
    if new and path.exists():
        raise FerRosError(f"{option} {path}: exists; remove it or choose another output path")
    if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
        raise FerRosError(f"{option} {path}: the file is not writable; check its permissions")
    # the nearest existing folder must be writable; a file's own folder must exist (writers create no folders)
    parent = path.parent if kind in _SUFFIXES else path
    if kind in _SUFFIXES and not parent.exists():
        raise FerRosError(f"{option} {path}: the folder {parent} does not exist; create it first")
    base = parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise FerRosError(f"{option} {path}: {base} is not a folder")
    try:  # a real file, as permissions alone do not tell (root, read-only mounts, /proc)
        tempfile.TemporaryFile(dir=base).close()
    except OSError as e:
        raise FerRosError(f"{option} {path}: cannot write in {base} ({e.strerror or e}); choose another place") \
            from None
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, keep_on_interrupt: bool = False):
    """Write `path` through a temporary file beside it: yields that file's path (same suffix, so writers pick
    the same format; an ASCII name, so OpenCV can open it whatever `path` is called), renamed to `path` when the
    block ends and removed when it raises, so a failed writer leaves nothing half-written. `keep_on_interrupt`:
    Ctrl-C keeps what was written (a video of the frames so far, closed by the block). The file gets the mode
    any new file gets under the umask (0644 with the usual 022), not the temporary file's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fer_ros-", suffix=path.suffix.lower()
                               if path.suffix.isascii() else ".part")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except KeyboardInterrupt:
        if keep_on_interrupt and os.path.getsize(tmp):
            os.replace(tmp, path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def removed_on_failure(folder: str | Path | None):
    """A new output folder (a bag) that the block writes: removed when the block raises, so a failed run leaves no
    half-written folder (`check_output(kind="bag")` made sure it did not exist before)."""
    try:
        yield
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop of symbolic links (before Python 3.13)
        return a.absolute() == b.absolute()


def _have_image_writer(path: Path) -> bool:
    import cv2

    try:  # the suffix alone: OpenCV crashes on a path that is not UTF-8
        return path.suffix.isascii() and bool(cv2.haveImageWriter("x" + path.suffix.lower()))
    except cv2.error:  # e.g. .exr with its codec disabled
        return False


# ---- the parser and main -----------------------------------------------------------------------------------------

def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser, with `command`'s options. If that command's module cannot be imported for lack of an optional
    dependency, its options are read from the module's source (so --help works) and `parser.missing` says
    what to install."""
    parser = ArgumentParser(
        prog="fer-ros", description="Facial expression recognition for ROS 2 robots and virtual agents.",
        epilog="exit status: 0 all done, 1 done but some items were skipped (each said on stderr), 2 nothing done "
               "(bad input or options, or an error: one line on stderr says what and what to do)")
    parser.add_argument("--version", action="version", version=f"fer-ros {__version__}")
    parser.missing = None
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        if name == command:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError as err:
                parser.missing = missing_dependency(err)
                if parser.missing is None:
                    raise
                p.epilog = f"note: {parser.missing}"
                _arguments_from_source(module, p)
    return parser


def _arguments_from_source(module: str, parser: argparse.ArgumentParser) -> None:
    """Run a command module's add_arguments without importing the module (it needs a missing dependency)."""
    try:
        origin = importlib.util.find_spec(module).origin
        tree = ast.parse(Path(origin).read_text(), origin)
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "add_arguments")
        namespace = {"__name__": module, "argparse": argparse}
        exec(compile(ast.Module(body=[fn], type_ignores=[]), origin, "exec"), namespace)
        namespace["add_arguments"](parser)
    except Exception:  # it uses names of the module: --help shows the note only
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    name = command if command in COMMANDS else None
    with warnings.catch_warnings():
        warnings.simplefilter("always", FerRosWarning)
        warnings.showwarning = _warning_printer(name or "")
        label = name or ""
        try:
            parser = build_parser(name)
            args = parser.parse_args(argv)
            label = " ".join(filter(None, (args.command, getattr(args, "bag_command", None))))
            warnings.showwarning = _warning_printer(label)
            if parser.missing:
                print(f"fer-ros {label}: error: {parser.missing}", file=sys.stderr)
                return EXIT_FAILED
            return importlib.import_module(COMMANDS[args.command][0]).run(args) or EXIT_OK
        except SystemExit:
            raise
        except BaseException as err:  # this is the one place that turns whatever stopped a command into a line
            if os.environ.get("FER_ROS_DEBUG") and not isinstance(err, KeyboardInterrupt):
                raise
            line, code = error_line(label, err)
            print(line, file=sys.stderr)
            return code


def _warning_printer(command: str):
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FerRosWarning):
            from tqdm import tqdm  # tqdm.write keeps a progress bar below the line instead of breaking it

            tqdm.write(f"fer-ros {command}: warning: {one_line(message)}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)
    return show


if __name__ == "__main__":
    sys.exit(main())
