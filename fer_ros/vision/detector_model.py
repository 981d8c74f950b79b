"""Where the YuNet model file comes from: a parameter, an environment variable or the user's cache.

The package never ships the file. `fer-ros models fetch` downloads it from OpenCV Zoo into the
cache and keeps it only when its SHA-256 is the published one; `find_yunet` looks, in order, at
the `detector_model` parameter, `$FER_ROS_YUNET_MODEL` and the cache
(`$XDG_CACHE_HOME/fer_ros`, default `~/.cache/fer_ros`).
"""

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import FerRosError
from ..modelfile import sha256
from .yunet import MODEL_NAME, MODEL_SHA256, MODEL_URL

ENV_VAR = "FER_ROS_YUNET_MODEL"
FETCH_HINT = ("run `fer-ros models fetch` (`python3 -m fer_ros models fetch` in a ROS 2 workspace; it downloads "
              "YuNet, 232 kB, into the user cache)")


class FetchError(FerRosError):
    """A download failed or did not match its checksum."""


class ChecksumError(FetchError):
    """A download that is not the file expected; `got` is its SHA-256."""

    def __init__(self, message: str, got: str):
        super().__init__(message)
        self.got = got


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_ros"


def find_yunet(explicit: str | Path | None = None) -> tuple[Path | None, str]:
    """(the YuNet model file, or None; one line saying which detector that gives and why)."""
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit), f"yunet: detector_model {explicit}"
        return None, f"haar: detector_model {explicit} does not exist; {FETCH_HINT}, or fix the path"
    env = os.environ.get(ENV_VAR)
    if env:
        if Path(env).is_file():
            return Path(env), f"yunet: ${ENV_VAR} = {env}"
        return None, f"haar: ${ENV_VAR} = {env} does not exist; {FETCH_HINT}, or fix the variable"
    cached = cache_dir() / MODEL_NAME
    if cached.is_file():
        return cached, f"yunet: {cached}"
    return None, (f"haar: no YuNet model file (no detector_model, no ${ENV_VAR}, nothing in {cache_dir()}); "
                  f"YuNet finds more faces and is faster: {FETCH_HINT}")


def fetch(url: str = MODEL_URL, dest: Path | None = None, expected: str | None = MODEL_SHA256, timeout: float = 60.0,
          progress=None) -> Path:
    """Download `url` to `dest` (default: the cache), keeping it only if its SHA-256 is `expected` (None:
    any file).

    The file is written beside `dest` under a temporary name and renamed into place once checked, so a
    failed or corrupted download never leaves a file that `find_yunet` would take.
    """
    dest = Path(dest) if dest else cache_dir() / MODEL_NAME
    if expected is not None and dest.is_file() and sha256(dest.read_bytes()) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while block := response.read(1 << 16):
                out.write(block)
                if progress:
                    progress(len(block), total)
        got = sha256(Path(tmp).read_bytes())
        if expected is not None and got != expected:
            raise ChecksumError(f"{url}: SHA-256 {got} is not the published {expected}; the file was not kept "
                                "(a corrupted or substituted download: try again, or download it by hand and "
                                "check it)", got)
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise FetchError(f"{url}: download failed ({reason}); check the network, or download it by hand and "
                         f"set ${ENV_VAR}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download YuNet and keep it if its SHA-256 matches",
                       description="Download OpenCV Zoo's YuNet face detector into the user cache "
                                   "(or --dest) and keep it only if its SHA-256 is the published one.")
    f.add_argument("--url", default=MODEL_URL, help="where to download it from (default: OpenCV Zoo)")
    f.add_argument("--dest", type=Path, help=f"file to write (default: {cache_dir() / MODEL_NAME})")
    sub.add_parser("where", help="say which detector `detector: auto` takes here, and why",
                   description="Say which detector `detector: auto` takes on this machine, and why.")


def run(args) -> int:
    if args.action == "where":
        print(find_yunet()[1])
        return 0
    from tqdm import tqdm

    with tqdm(unit="B", unit_scale=True, desc=MODEL_NAME, leave=False, disable=None) as bar:  # None: tty only
        def progress(n, total):
            bar.total = total or None
            bar.update(n)

        path = fetch(args.url, args.dest, progress=progress)
    print(f"{path}: YuNet, SHA-256 {MODEL_SHA256} (checked); `detector: auto` now uses it"
          + ("" if args.dest is None else f" when {ENV_VAR}={path} or detector_model:={path}"))
    return 0
