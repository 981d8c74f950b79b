"""Video files: one reader, timed by the container, for `fer-ros infer` and `fer-ros bag from-video`.

It checks what it reads against what the container declares: a file that ends early (cut or damaged)
gives a FerRosWarning and `Video.truncated` says so, for the command's summary.
"""

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, FerRosWarning, ImageError
from .encodings import check_size, opencv_path

# FFmpeg's own error lines ("moov atom not found", ...) would interleave with ours, which say what went wrong in
# one line; OpenCV reads this when it first opens a video. Set it yourself (e.g. 16) to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

#: a video that yields fewer than this share of the frames its container declares is reported as truncated
#: (intact files can fall a few frames short of their declared count: edit lists, B-frames)
COMPLETE_SHARE = 0.95


def scaled(img: np.ndarray, scale: float) -> np.ndarray:
    """`img` resized by `scale` (area averaging when shrinking)."""
    if scale == 1.0:
        return img
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


class Video:
    """An open video file: its frame rate, frame count (0 when the container does not say) and frames."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._cap = cv2.VideoCapture(opencv_path(path))
        except ImageError as e:
            raise DataError(str(e)) from None
        if not self._cap.isOpened():
            raise DataError(f"{path}: cannot open the video (missing file or unsupported codec)")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.total = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width, height = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_size(width, height, "its frame")
        except ImageError as e:
            self._cap.release()
            raise DataError(f"{path}: {e}") from None
        #: frames decoded so far, and why the file ended early (None: it did not, or it is not read to its end)
        self.read = 0
        self.truncated: str | None = None

    def count(self, step: int = 1, max_frames: int | None = None) -> int:
        """How many frames `frames(step, max_frames)` yields, if the container knows its length (else 0)."""
        n = -(-self.total // step)
        return min(n, max_frames) if max_frames else n

    def frames(self, step: int = 1, max_frames: int | None = None,
               scale: float = 1.0) -> Iterator[tuple[float, np.ndarray]]:
        """(seconds, BGR) of every `step`-th frame, by CAP_PROP_POS_MSEC; index / fps where the container
        reports no time or repeats one. Reads the file once, then releases it."""
        index, last, n = 0, -1.0, 0
        try:
            while max_frames is None or n < max_frames:
                ok, frame = self._cap.read()
                if not ok:
                    self._ended(index)
                    return
                self.read = index + 1
                t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
                t = last = t if t > last else index / self.fps
                if index % step == 0:
                    yield t, scaled(frame, scale)
                    n += 1
                index += 1
        finally:
            self._cap.release()

    def _ended(self, read: int) -> None:
        """At the end of the file: compare the frames read with the count the container declares."""
        if self.total and read < COMPLETE_SHARE * self.total:
            self.truncated = (f"{self.path}: the video ended after {read} of the {self.total} frames its container "
                              "declares (a truncated or damaged file?)")
            warnings.warn(self.truncated, FerRosWarning, stacklevel=3)
