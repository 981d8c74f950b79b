"""Where the YuNet model file comes from: a parameter, an environment variable or the user's cache.

The package never ships the file. `fer-ros models fetch` downloads it from OpenCV Zoo into the
cache and keeps it only when its SHA-256 is the published one; `find_yunet` looks, in order, at
the `detector_model` parameter, `$FER_ROS_YUNET_MODEL` and the cache
(`$XDG_CACHE_HOME/fer_ros`, default `~/.cache/fer_ros`), and takes the first file that passes
`yunet.read_model`'s check (the one check `where`, `fetch` and the detector make). Every download
goes through `fetch`, which turns any network failure into one `FetchError` line (`download_error`).
A file downloaded by hand goes into the cache with `fer-ros models fetch --url file:///path/to/it`.
"""

import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..cli import atomic_output
from ..errors import FerRosError, ModelFileError
from ..modelfile import sha256
from .yunet import MODEL_NAME, MODEL_SHA256, MODEL_URL, read_model

ENV_VAR = "FER_ROS_YUNET_MODEL"
FETCH_HINT = ("run `fer-ros models fetch` (`python3 -m fer_ros models fetch` in a ROS 2 workspace; it downloads "
              "YuNet, 232 kB, into the user cache)")
BY_HAND = (f"or download {MODEL_NAME} by hand ({MODEL_URL}) and copy it into the cache with "
           f"`fer-ros models fetch --url file:///path/to/{MODEL_NAME}`")


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
    """(the YuNet model file, or None; one line saying which detector that gives and why).

    An explicit `detector_model` is the only place looked at when given. Otherwise a bad file in
    `$FER_ROS_YUNET_MODEL` does not hide a good cached one: the line says which was used and why.
    """
    if explicit:
        try:
            read_model(explicit)
        except ModelFileError as e:
            return None, f"haar: detector_model {explicit}: {_reason(e, explicit)}; {FETCH_HINT}, or fix the path"
        return Path(explicit), f"yunet: detector_model {explicit}"
    env, cached = os.environ.get(ENV_VAR), cache_dir() / MODEL_NAME
    env_problem = None
    if env:
        try:
            read_model(env)
            return Path(env), f"yunet: ${ENV_VAR} = {env}"
        except ModelFileError as e:
            env_problem = f"${ENV_VAR} = {env} is not used: {_reason(e, env)}"
    try:
        read_model(cached)
        return cached, f"yunet: {cached}" + (f" ({env_problem}; fix or unset the variable)" if env_problem else "")
    except ModelFileError as e:
        cache_problem = (f"nothing in {cache_dir()}" if not cached.exists() else
                         f"the cached {cached} is not used: {_reason(e, cached)}")
    if env_problem:
        return None, f"haar: {env_problem}, and {cache_problem}; fix or unset the variable, or {FETCH_HINT}"
    if cached.exists():
        return None, f"haar: {cache_problem}; {FETCH_HINT} again"
    return None, (f"haar: no YuNet model file (no detector_model, no ${ENV_VAR}, {cache_problem}); "
                  f"YuNet finds more faces and is faster: {FETCH_HINT}")


def _reason(err: ModelFileError, path) -> str:
    """The why of a `read_model` error, without the path it starts with."""
    return str(err).removeprefix(f"{path}: ")


def download_error(url: str, err: BaseException) -> FetchError:
    """The one translation of whatever a download raised into a FetchError line: what failed and what to do."""
    if isinstance(err, ValueError):  # urllib: "unknown url type", a malformed address
        return FetchError(f"{url!r}: not a URL to download from ({err}); give an http://, https:// or "
                          "file:///absolute/path URL")
    if isinstance(err, urllib.error.HTTPError):
        what = f"the server answered HTTP {err.code} {err.reason}"
    elif isinstance(err, http.client.IncompleteRead):
        what = f"the transfer was cut after {len(err.partial)} bytes" + (f" of {len(err.partial) + err.expected}"
                                                                         if err.expected else "")
    elif isinstance(err, http.client.HTTPException):  # BadStatusLine, RemoteDisconnected, ...
        what = f"the server's reply is not HTTP ({type(err).__name__}: {str(err)[:80]!r})"
    elif isinstance(err, urllib.error.URLError):
        reason = err.reason
        why = getattr(reason, "strerror", None) or reason
        if isinstance(reason, socket.gaierror):
            what = f"no network or unknown host ({why})"
        elif urllib.parse.urlsplit(url).scheme == "file":
            what = f"cannot read the file ({why})"
        else:
            what = f"cannot connect ({why})"
    elif isinstance(err, (TimeoutError, socket.timeout)):
        what = "no answer in time"
    elif isinstance(err, OSError):
        what = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    else:
        what = f"{type(err).__name__}: {err}"
    return FetchError(f"{url}: download failed: {what}; nothing was kept. Check the network, {BY_HAND} "
                      f"(or set ${ENV_VAR} to it)")


def fetch(url: str = MODEL_URL, dest: Path | None = None, expected: str | None = MODEL_SHA256, timeout: float = 60.0,
          progress=None, check=None) -> Path:
    """Download `url` to `dest` (default: the cache), keeping it only if its SHA-256 is `expected` (None:
    any file) and `check(path)` (e.g. `yunet.read_model`) raises nothing.

    The file is written beside `dest` under a temporary name and renamed into place once checked
    (`cli.atomic_output`), so a failed or corrupted download never leaves a file that `find_yunet` would
    take; it gets the mode of any new file under the umask (0644 with the usual 022).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise download_error(url, ValueError("it does not start with http://, https:// or file://"))
    dest = Path(dest) if dest else cache_dir() / MODEL_NAME
    if expected is not None and dest.is_file() and sha256(dest.read_bytes()) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest) as tmp:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total, received = int(response.headers.get("Content-Length") or 0), 0
                while block := response.read(1 << 16):
                    out.write(block)
                    received += len(block)
                    if progress:
                        progress(len(block), total)
                if received < total:  # http.client ends a body cut short quietly
                    raise http.client.IncompleteRead(b"\0" * received, total - received)
        except (ValueError, OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
            raise download_error(url, e) from None
        got = sha256(tmp.read_bytes())
        if expected is not None and got != expected:
            raise ChecksumError(f"{url}: SHA-256 {got} is not the published {expected}; the file was not kept "
                                "(a corrupted or substituted download: try again, or download it by hand and "
                                "check it)", got)
        if check is not None:
            try:
                check(tmp)
            except ModelFileError as e:
                raise FetchError(f"{url}: {_reason(e, tmp)}; the file was not kept") from None
    return dest


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = sub.add_parser("fetch", help="download YuNet and keep it if its SHA-256 matches",
                       description="Download OpenCV Zoo's YuNet face detector into the user cache "
                                   "(or --dest) and keep it only if its SHA-256 is the published one.")
    f.add_argument("--url", default=MODEL_URL,
                   help="where to download it from (default: OpenCV Zoo); file:///path/to/" + MODEL_NAME +
                        " copies a file downloaded by hand, checked the same way")
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

        path = fetch(args.url, args.dest, progress=progress, check=read_model)
    print(f"{path}: YuNet, SHA-256 {MODEL_SHA256} (checked); `detector: auto` now uses it"
          + ("" if args.dest is None else f" when {ENV_VAR}={path} or detector_model:={path}"))
    return 0
