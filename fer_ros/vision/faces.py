"""Face detectors behind one interface: YuNet (a CNN, model file) and OpenCV's Haar cascades (built in).

`detect` scans the whole image, on a copy downscaled so its longer side is at most
`detection_size` pixels (0 = full resolution). `detect_near` looks again only around known face
boxes (a video's tracks), each at its own scale: for Haar, whose cost grows with the pixels
scanned, a fraction of a whole scan. Boxes are reported in source pixels. `make_detector("auto")`
takes YuNet when its model file is found (`fer_ros.vision.detector_model`), else Haar, and says why.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import ImageError, ModelFileError

DETECTORS = ("auto", "yunet", "haar")
#: what can find a face (`Face.stage`): YuNet; Haar's frontal cascade, its profile cascade (image and mirror), the
#: frontal cascade on copies tilted each way (thorough scans)
STAGES = ("yunet", "frontal", "profile", "tilt+25", "tilt-25")
#: landmark order (YuNet's): the eye on the image's left first
LANDMARKS = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")
#: FER2013 median landmark positions (x, y as fractions of the crop), YuNet order
TEMPLATE = np.array([[0.315, 0.381], [0.674, 0.376], [0.491, 0.592], [0.353, 0.739], [0.647, 0.735]], np.float32)


@dataclass
class Face:
    """One detected face; box is float32 (x, y, w, h) in source pixels."""

    box: np.ndarray
    score: float
    #: float32 (5, 2) in LANDMARKS order; rows the detector does not know are NaN; None without landmarks
    landmarks: np.ndarray | None = None
    #: True when no detector found the face in this frame: the visual tracker carried it (`fer_ros.vision.carry`)
    carried: bool = False
    #: what found it: "yunet", or Haar's "frontal", "profile", "tilt+25" / "tilt-25" (STAGES)
    stage: str = ""

    @property
    def eyes(self) -> np.ndarray | None:
        """(2, 2) eye centres (image-left first), or None when either is unknown."""
        if self.landmarks is None or np.isnan(self.landmarks[:2]).any():
            return None
        return self.landmarks[:2]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of (N, 4) and (M, 4) x, y, w, h boxes: (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1]
    ax2, ay2 = ax1 + a[:, None, 2], ay1 + a[:, None, 3]
    bx2, by2 = bx1 + b[None, :, 2], by1 + b[None, :, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray, still: bool = False) -> list[Face]:
        """Faces in a BGR (H, W, 3) or grey (H, W) uint8 image; `still`: a still image, which can afford a
        slower, more thorough scan."""

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        """Faces found again near the given (x, y, w, h) boxes."""


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area of (N, 4) and (M, 4) x, y, w, h boxes: (N, M); 1 when one
    box holds the other, which IoU is not for a face inside a wider box."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = np.clip(np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None) * \
        np.clip(np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    smaller = np.minimum(a[:, None, 2] * a[:, None, 3], b[None, :, 2] * b[None, :, 3])
    return np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1.0), 0.0)


def _suppress(faces: list[Face], max_iou: float = 0.5) -> list[Face]:
    """Best-scoring faces first, dropping any that overlaps a kept one by more than `max_iou` IoU."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not kept or iou(np.array([k.box for k in kept]), face.box).max() <= max_iou:
            kept.append(face)
    return kept


def _merge(*stages: list[Face]) -> list[Face]:
    """The faces of several scans, earlier scans first: a later scan's face is added only where no kept face is
    (IoU <= 0.3 and under half of the smaller box shared). Scores of different cascades do not compare, and the
    frontal cascade frames a face as the classifier's crops were measured; a profile or tilted find placed around
    the same face would replace a well-placed box by a wider, shifted one."""
    kept: list[Face] = []
    for faces in stages:
        new = []
        for face in _suppress(faces, 0.3):
            if not kept or (iou(np.array([k.box for k in kept]), face.box).max() <= 0.3
                            and overlap(np.array([k.box for k in kept]), face.box).max() < 0.5):
                new.append(face)
        kept += new
    return kept


def _downscale(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """(image shrunk so its longer side is at most `size`, factor from small to source pixels)."""
    check_image(image)
    h, w = image.shape[:2]
    if size <= 0 or max(h, w) <= size:
        return image, 1.0
    s = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1]


def picture(image: np.ndarray, tolerance: int = 12) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the picture inside uniform borders (the bars of a letterboxed or pillarboxed frame: a
    landscape video in a portrait frame, a 4:3 camera in a 16:9 one); the whole image when it has none.

    A border is dark rows or columns within `tolerance` grey levels of the corner pixel's colour, looked for on a
    sample of at most about 160 pixels a side (kept a sample step wide of the picture). A border under 2 % of
    the side is kept (a frame's dark edge is not a bar)."""
    h, w = image.shape[:2]
    if int(image[0, 0].max()) > 2 * tolerance:  # bars are black; a light studio wall is the picture
        return 0, 0, w, h
    step = max(1, max(h, w) // 160)
    view = cv2.resize(image, (-(-w // step), -(-h // step)), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    differs = np.abs(view - view[0, 0]).reshape(view.shape[0], view.shape[1], -1).max(axis=2) > tolerance
    rows, cols = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if not len(rows):
        return 0, 0, w, h
    corner = image[0, 0].astype(np.int16)

    def first(lines: np.ndarray, start: int) -> int:
        """Index (from `start`) of the first full-resolution line, in a band a sample step wide, that differs."""
        band = np.abs(lines.astype(np.int16) - corner).reshape(len(lines), -1) > tolerance
        hit = np.flatnonzero(band.any(axis=1))
        return start + int(hit[0]) if len(hit) else start

    a, b = max(0, (rows[0] - 1) * step), min(h, (rows[-1] + 2) * step)
    y0 = first(image[a:rows[0] * step + 1, ::step], a)
    y1 = b - first(image[rows[-1] * step:b, ::step][::-1], 0)
    a, b = max(0, (cols[0] - 1) * step), min(w, (cols[-1] + 2) * step)
    x0 = first(image[::step, a:cols[0] * step + 1].swapaxes(0, 1), a)
    x1 = b - first(image[::step, cols[-1] * step:b].swapaxes(0, 1)[::-1], 0)
    y0, x0 = (y0 if y0 >= 0.02 * h else 0), (x0 if x0 >= 0.02 * w else 0)
    y1, x1 = (y1 if h - y1 >= 0.02 * h else h), (x1 if w - x1 >= 0.02 * w else w)
    return int(x0), int(y0), int(x1), int(y1)


def _shift(faces: list[Face], origin: tuple[int, int]) -> list[Face]:
    """Faces found in a part of an image that starts at `origin`, in the image's pixels."""
    if origin == (0, 0):
        return faces
    for face in faces:
        face.box[:2] += origin
        if face.landmarks is not None:
            face.landmarks += np.asarray(origin, np.float32)
    return faces


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] != 3) or image.size == 0:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"expected a non-empty uint8 BGR (H, W, 3) or grey (H, W) image, got {what}")


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, plus eye cascades inside each face for alignment.

    The score, n / (n + min_neighbors) for n overlapping raw detections, is informative only (>= 0.5
    for every face returned; min_neighbors is the threshold). Eyes are searched in the upper half of
    each face at full resolution and kept only as a plausible pair (one each side of the centre,
    0.25-0.65 face widths apart, level within 30 degrees). An image smaller than `detection_size` is
    enlarged to it, so faces down to about 24 / detection_size of its side are found.

    `thorough` whole-frame scans, and those of still images (`detect(image, still=True)`), also look
    for half-profile faces (the profile cascade on the image and its mirror, with `min_neighbors` + 2)
    and for faces tilted by +-`TILT` degrees (the frontal cascade on rotated copies; such a face gets
    eye positions from its tilt, to level its crop); overlapping finds are merged by non-maximum
    suppression. About five times the work of a plain scan: what still images can afford, and a stream
    can choose (`haar_thorough`).
    """

    name = "haar"
    #: `detect_near` scales each known face to about this size (px), in a neighbourhood `roi_context`
    #: of its size on each side, and looks for faces 0.75-1.35 times as big: well above the cascade's
    #: 24 px window, where a face at 30 px is often lost
    roi_face_px = 96
    roi_context = 0.4
    #: degrees of in-plane tilt a thorough scan also looks for, each way
    TILT = 25.0

    def __init__(self, detection_size: int = 320, scale_factor: float = 1.15, min_neighbors: int = 3,
                 eyes: bool = True, thorough: bool = False):
        self.face_cascade = _cascade("haarcascade_frontalface_default.xml")
        self.eye_cascade = _cascade("haarcascade_eye.xml") if eyes else None
        self.profile_cascade = _cascade("haarcascade_profileface.xml")
        self.detection_size = detection_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.thorough = thorough

    def detect(self, image: np.ndarray, still: bool = False) -> list[Face]:
        check_image(image)
        x0, y0, x1, y1 = picture(image)
        return _shift(self._detect(image[y0:y1, x0:x1], still), (x0, y0))

    def _detect(self, image: np.ndarray, still: bool) -> list[Face]:
        small, scale = _downscale(image, self.detection_size)
        if 0 < max(small.shape[:2]) < self.detection_size:  # enlarge a small image: faces under 24 px are lost
            f = self.detection_size / max(small.shape[:2])
            small = cv2.resize(small, (round(small.shape[1] * f), round(small.shape[0] * f)),
                               interpolation=cv2.INTER_LINEAR)
            scale = image.shape[1] / small.shape[1]
        faces = self._scan(image, small, scale, np.zeros(2, np.float32), near=False)
        if self.thorough or still:  # frontal finds first, then tilted, then profile: see _merge
            grey = _grey(small)
            # the pyramid again, offset by half a step: a face between two of its scales may get too few neighbours
            half = cv2.resize(small, (round(small.shape[1] / self.scale_factor ** 0.5),
                                      round(small.shape[0] / self.scale_factor ** 0.5)), interpolation=cv2.INTER_AREA)
            between = self._scan(image, half, image.shape[1] / half.shape[1], np.zeros(2, np.float32), near=False)
            faces = _merge(faces, between, self._tilted(grey, scale), self._profiles(grey, scale))
        return faces

    def _profiles(self, grey: np.ndarray, scale: float) -> list[Face]:
        """Half-profile faces turned either way (the cascade knows one way: the mirror gives the other)."""
        faces, n_min = [], self.min_neighbors + 2
        for mirrored in (False, True):
            rects, counts = self.profile_cascade.detectMultiScale2(cv2.flip(grey, 1) if mirrored else grey,
                                                                   self.scale_factor, n_min)
            for rect, n in zip(rects, counts, strict=True):
                box = np.asarray(rect, np.float32)
                if mirrored:
                    box[0] = grey.shape[1] - box[0] - box[2]
                faces.append(Face(box * scale, float(n) / (float(n) + n_min), stage="profile"))
        return faces

    def _tilted(self, grey: np.ndarray, scale: float) -> list[Face]:
        """Faces tilted by +-TILT degrees, found upright in rotated copies; eyes placed from the tilt."""
        faces = []
        centre = (grey.shape[1] / 2, grey.shape[0] / 2)
        for angle in (-self.TILT, self.TILT):
            m = cv2.getRotationMatrix2D(centre, angle, 1.0)
            back = cv2.invertAffineTransform(m)
            rotated = cv2.warpAffine(grey, m, (grey.shape[1], grey.shape[0]), borderMode=cv2.BORDER_REPLICATE)
            rects, counts = self.face_cascade.detectMultiScale2(rotated, self.scale_factor, self.min_neighbors)
            for (x, y, w, h), n in zip(rects, counts, strict=True):
                eyes = np.array([x, y]) + TEMPLATE[:2] * (w, h)
                eyes = eyes @ back[:, :2].T + back[:, 2]
                cx, cy = back @ (x + w / 2, y + h / 2, 1.0)
                landmarks = np.full((5, 2), np.nan, np.float32)
                landmarks[:2] = eyes * scale
                box = np.array([cx - w / 2, cy - h / 2, w, h], np.float32) * scale
                faces.append(Face(box, float(n) / (float(n) + self.min_neighbors), landmarks, stage=f"tilt{angle:+g}"))
        return faces

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        """Faces found again near known boxes, each neighbourhood scanned alone at the face's own scale; at most
        one face per box (new faces are the whole-frame scans' to find)."""
        check_image(image)
        faces = []
        for x, y, w, h in np.asarray(boxes, np.float32).reshape(-1, 4):
            side = max(w, h)
            half = side * (0.5 + self.roi_context)
            cx, cy = x + w / 2, y + h / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(image.shape[1], int(cx + half)), min(image.shape[0], int(cy + half))
            if side < 4 or x1 - x0 < 0.5 * side or y1 - y0 < 0.5 * side:
                continue
            f = self.roi_face_px / side
            size = (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f)))
            small = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            found = self._scan(image, small, (x1 - x0) / size[0], np.array([x0, y0], np.float32), near=True)
            if found:  # one tracked face, one face: the find that overlaps it most (a neighbour's is not it)
                faces.append(found[int(np.argmax(iou(np.array([f.box for f in found]), (x, y, w, h))[:, 0]))])
        return _suppress(faces, 0.3)

    def _scan(self, image: np.ndarray, small: np.ndarray, scale: float, origin: np.ndarray,
              near: bool) -> list[Face]:
        """Faces in `small` (a part of `image` at `origin`, shrunk by 1/scale) in image pixels, with their eyes."""
        sizes = {"minSize": (int(0.75 * self.roi_face_px),) * 2, "maxSize": (int(1.35 * self.roi_face_px),) * 2} \
            if near else {}
        rects, counts = self.face_cascade.detectMultiScale2(_grey(small), self.scale_factor, self.min_neighbors,
                                                            **sizes)
        faces = []
        for rect, n in zip(rects, counts, strict=True):
            box = np.asarray(rect, np.float32) * scale
            box[:2] += origin
            eyes = self._eyes(image, box) if self.eye_cascade is not None else None
            landmarks = None
            if eyes is not None:
                landmarks = np.full((5, 2), np.nan, np.float32)
                landmarks[:2] = eyes
            faces.append(Face(box, float(n) / (float(n) + self.min_neighbors), landmarks, stage="frontal"))
        return faces

    def _eyes(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The eye pair in the upper half of a face box, in source pixels, or None."""
        x, y, w, h = box
        x0, y0 = max(0, int(x)), max(0, int(y + 0.15 * h))
        x1, y1 = min(image.shape[1], int(x + w)), min(image.shape[0], int(y + 0.55 * h))
        if x1 - x0 < 20 or y1 - y0 < 10:
            return None
        roi, scale = _downscale(image[y0:y1, x0:x1], 96)
        fw = w / scale
        found = self.eye_cascade.detectMultiScale(_grey(roi), 1.15, 3, maxSize=(int(fw / 2.5),) * 2)
        if len(found) < 2:
            return None
        centres = np.array([(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in found], np.float32)
        sizes = np.asarray(found, np.float32)[:, 2]
        best, best_size = None, 0.0
        mid = (x + w / 2 - x0) / scale
        for i in range(len(found)):
            for j in range(len(found)):
                (lx, ly), (rx, ry) = centres[i], centres[j]
                dist = np.hypot(rx - lx, ry - ly)
                if lx < mid <= rx and 0.25 * fw <= dist <= 0.65 * fw and abs(ry - ly) <= 0.5 * dist \
                        and min(sizes[i], sizes[j]) > best_size:
                    best, best_size = (i, j), min(sizes[i], sizes[j])
        if best is None:
            return None
        return centres[list(best)] * scale + np.array([x0, y0], np.float32)


def _cascade(filename: str, extra_dirs=None) -> cv2.CascadeClassifier:
    """OpenCV's Haar cascade `filename`, from wherever the installed OpenCV keeps them.

    pip's opencv-python has them in cv2.data; the distributions' python3-opencv (Debian, Ubuntu: 4.5.4,
    4.6.0) has no cv2.data, and its cascades come in the opencv-data package, in
    /usr/share/opencv4/haarcascades. $FER_ROS_HAARCASCADES (a folder) comes first; `extra_dirs` (tests)
    replaces the built-in list of folders.
    """
    import os
    import sys

    dirs = [os.environ.get("FER_ROS_HAARCASCADES", "")]
    data = getattr(cv2, "data", None)
    dirs.append(getattr(data, "haarcascades", ""))
    if extra_dirs is None:
        prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", ""),
                                  "/usr", "/usr/local", "/opt/homebrew", "/opt/local"])
        extra_dirs = [f"{p}/share/{d}/haarcascades" for p in prefixes if p for d in ("opencv4", "opencv")]
    dirs += list(extra_dirs)
    searched = [Path(d) for d in dict.fromkeys(dirs) if d]
    for folder in searched:
        path = folder / filename
        if path.is_file():
            try:
                cascade = cv2.CascadeClassifier(str(path))
            except (cv2.error, SystemError):  # a file OpenCV cannot parse
                cascade = None
            if cascade is None or cascade.empty():
                raise ModelFileError(f"{path}: Haar cascade unreadable (reinstall the package that holds it: "
                                     "opencv-data on Debian/Ubuntu, opencv-python with pip)")
            return cascade
    raise ModelFileError(
        f"Haar cascade {filename} not found (OpenCV {cv2.__version__} at {getattr(cv2, '__file__', '?')}; "
        f"searched: {', '.join(map(str, searched)) or 'nothing'}): install the package that holds the cascades: "
        "opencv-data on Debian/Ubuntu (apt install opencv-data, for the distribution's python3-opencv), or "
        "pip install opencv-python; or set FER_ROS_HAARCASCADES to a folder that has them")


class YuNetDetector:
    """YuNet (OpenCV Zoo's CNN face detector) through ONNX Runtime (`fer_ros.vision.yunet`), on any OpenCV:
    boxes, 5 landmarks and a score per face.

    `detect_near` scans the whole image: a YuNet run costs about as much (1.5-3 ms) for one
    face's neighbourhood as for a 320-pixel frame.
    """

    name = "yunet"

    def __init__(self, model_path: str | Path | None, detection_size: int = 320, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000):
        from .yunet import YuNet

        if not model_path:
            raise ModelFileError("the yunet detector needs its model file: run `fer-ros models fetch`, or give "
                                 "detector_model / --detector-model (face_detection_yunet_2023mar.onnx)")
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such YuNet model file (`fer-ros models fetch` downloads it)")
        self.net = YuNet(path, score_threshold, nms_threshold, top_k)
        self.path = path
        self.detection_size = detection_size

    def detect(self, image: np.ndarray, still: bool = False) -> list[Face]:
        check_image(image)
        x0, y0, x1, y1 = picture(image)
        small, scale = _downscale(image[y0:y1, x0:x1], self.detection_size)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        rows = self.net(small)
        rows[:, :14] *= scale
        return _shift([Face(r[:4].copy(), float(r[14]), r[4:14].reshape(5, 2).copy(), stage="yunet") for r in rows],
                      (x0, y0))

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        return self.detect(image)


def make_detector(name: str = "haar", model_path: str | Path | None = None, **options) -> Detector:
    """A detector by name: "yunet" (its model file as `fer_ros.vision.detector_model.find_yunet(model_path)`
    finds it: the path, $FER_ROS_YUNET_MODEL or the cache), "haar" (built in) or "auto": YuNet when that
    finds a file, else Haar. Options go to the
    detector's constructor (those the chosen one does not take are dropped). The detector's `note`
    says what was chosen and why."""
    if name == "haar":
        why = "haar: as configured"
    elif name in ("auto", "yunet"):
        from .detector_model import find_yunet

        found, why = find_yunet(model_path)
        if name == "yunet" and found is None:  # asked for: an error, not a fallback
            raise ModelFileError(f"the yunet detector has no usable model file: {why.removeprefix('haar: ')}")
        name, model_path = ("yunet", found) if found else ("haar", None)
    else:
        raise ValueError(f"unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}")
    cls = YuNetDetector if name == "yunet" else HaarDetector
    accepted = cls.__init__.__code__.co_varnames[:cls.__init__.__code__.co_argcount]
    options = {k: v for k, v in options.items() if k in accepted}
    detector = cls(model_path, **options) if name == "yunet" else cls(**options)
    detector.note = why
    return detector
