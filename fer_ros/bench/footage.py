"""Harder footage made from real clips, and how many of its frames the pipeline keeps a face on.

The sample clips are cooperative and frontal; cameras on robots are not. Each variant changes
every frame of a real clip the same way: half and double size, in-plane rotation, a dark and
noisy or a blurred camera, the face partly out of the frame, the frame small inside a larger
one. `keep_rate` runs a pipeline configuration over a variant and a reference configuration
(the same detector scanning the whole frame every frame) and compares the frames with a face.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

VARIANTS = ("original", "half", "double", "rotate+20", "rotate-25", "dark", "blur", "cut", "small")


def make_variant(frame: np.ndarray, name: str) -> np.ndarray:
    """The frame (BGR uint8) changed as variant `name` says (see VARIANTS)."""
    h, w = frame.shape[:2]
    if name == "original":
        return frame
    if name in ("half", "double"):
        f = 0.5 if name == "half" else 2.0
        return cv2.resize(frame, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA if f < 1 else
                          cv2.INTER_LINEAR)
    if name.startswith("rotate"):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(name[len("rotate"):]), 1.0)
        return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if name == "dark":  # a quarter of the light, gamma-darkened, with sensor noise
        dark = 255.0 * (frame / 255.0) ** 1.6 * 0.35
        noise = np.random.default_rng(int(frame[::7, ::7].sum()) % 2**32).normal(0, 4, frame.shape)
        return np.clip(dark + noise, 0, 255).astype(np.uint8)
    if name == "blur":
        return cv2.GaussianBlur(frame, (0, 0), max(w, h) / 400)
    if name == "cut":  # the picture shifted left by 30% of its width: a centred face is partly out
        m = np.float32([[1, 0, -0.3 * w], [0, 1, 0]])
        return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_CONSTANT)
    if name == "small":  # the frame at 40% inside a 1280x720 grey canvas, off centre
        canvas = np.full((720, 1280, 3), 96, np.uint8)
        small = cv2.resize(frame, (round(w * 512 / max(w, h)), round(h * 512 / max(w, h))),
                           interpolation=cv2.INTER_AREA)
        canvas[100:100 + small.shape[0], 700:700 + small.shape[1]] = small
        return canvas
    raise ValueError(f"unknown footage variant {name!r}: choose one of {', '.join(VARIANTS)}")


#: the same scene as other cameras would deliver it (name: (width, height) of the frame; "portrait": the
#: picture scaled to the width of a 720x1280 portrait frame, black above and below, as phones record it)
FRAME_SIZES = {"640x360": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080), "4K": (3840, 2160),
               "portrait 720x1280": (720, 1280)}


def at_frame_size(picture: np.ndarray, name: str) -> tuple[np.ndarray, float, float]:
    """(a 640x360 `picture` as the frame `name` of FRAME_SIZES, the factor and the y offset that map the
    frame's pixels back to the picture's: x' = x * factor, y' = (y - offset) * factor)."""
    w, h = FRAME_SIZES[name]
    f = w / picture.shape[1]
    scaled = cv2.resize(picture, (w, round(picture.shape[0] * f)), interpolation=cv2.INTER_LINEAR)
    if scaled.shape[0] >= h:
        return scaled, 1 / f, 0.0
    top = (h - scaled.shape[0]) // 2
    frame = np.zeros((h, w, 3), np.uint8)
    frame[top:top + scaled.shape[0]] = scaled
    return frame, 1 / f, float(top)


def frames(path: str | Path, variant: str = "original", limit: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """(stamp in s, frame) of a video file, changed as `variant` says."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    n = 0
    try:
        while not limit or n < limit:
            ok, frame = cap.read()
            if not ok:
                return
            yield n / fps, make_variant(frame, variant)
            n += 1
    finally:
        cap.release()


@dataclasses.dataclass
class Keep:
    """Frames with a face: by the configuration tried, by the reference, by both; label agreement; the
    median frame times (ms) of both; frames the configuration tried still reports a face on after `left_at`."""

    frames: int
    tried: int
    reference: int
    both: int
    same_label: int
    tried_ms: float
    reference_ms: float
    after_left: int

    @property
    def rate(self) -> float:
        """Share of the reference's face frames on which the configuration tried also reports a face."""
        return self.both / self.reference if self.reference else 1.0

    @property
    def agreement(self) -> float:
        """Share of the frames both report on whose first face both put the same label."""
        return self.same_label / self.both if self.both else 1.0


def keep_rate(tried, reference, clip: str | Path, variant: str = "original", limit: int = 0,
              left_at: int | None = None) -> Keep:
    """Run two pipelines (fresh: reset first) over one clip variant and compare their face frames."""
    tried.reset()
    reference.reset()
    n = n_tried = n_ref = both = same = after = 0
    ms_tried, ms_ref = [], []
    for stamp, frame in frames(clip, variant, limit):
        a, b = tried.process(frame, stamp), reference.process(frame, stamp)
        ms_tried.append(a.timings["total"])
        ms_ref.append(b.timings["total"])
        after += bool(a.faces) and left_at is not None and n >= left_at
        n += 1
        n_tried += bool(a.faces)
        n_ref += bool(b.faces)
        if a.faces and b.faces:
            both += 1
            same += a.faces[0].label == b.faces[0].label
    return Keep(n, n_tried, n_ref, both, same, float(np.median(ms_tried)) if n else 0.0,
                float(np.median(ms_ref)) if n else 0.0, after)
