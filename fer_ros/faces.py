"""Face detectors behind one interface: OpenCV's Haar cascade (built in) and YuNet (model file).

`detect` scans the whole image, on a copy downscaled so its longer side is at most
`detection_size` pixels (0 = full resolution). `detect_near` looks again only around known face
boxes (a video's tracks): for Haar, whose cost grows with the pixels scanned, a fraction of a
whole scan. Boxes are reported in source pixels.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .errors import ImageError, ModelFileError

DETECTORS = ("haar", "yunet")
#: landmark order (YuNet's): the eye on the image's left first
LANDMARKS = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


@dataclass
class Face:
    """One detected face; box is float32 (x, y, w, h) in source pixels."""

    box: np.ndarray
    score: float
    #: float32 (5, 2) in LANDMARKS order; rows the detector does not know are NaN; None without landmarks
    landmarks: np.ndarray | None = None

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

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a BGR (H, W, 3) or grey (H, W) uint8 image."""

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        """Faces found again near the given (x, y, w, h) boxes."""


def _suppress(faces: list[Face], overlap: float = 0.5) -> list[Face]:
    """Best-scoring faces first, dropping any that overlaps a kept one by more than `overlap` IoU."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not kept or iou(np.array([k.box for k in kept]), face.box).max() <= overlap:
            kept.append(face)
    return kept


def _downscale(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """(image shrunk so its longer side is at most `size`, factor from small to source pixels)."""
    _check_image(image)
    h, w = image.shape[:2]
    if size <= 0 or max(h, w) <= size:
        return image, 1.0
    s = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1]


def _check_image(image: np.ndarray) -> None:
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
    0.25-0.65 face widths apart, level within 30 degrees).
    """

    name = "haar"
    #: `detect_near` scales a known face to this size, in a neighbourhood `roi_context` of its size each side
    roi_face_px = 30
    roi_context = 0.3

    def __init__(self, detection_size: int = 320, scale_factor: float = 1.15, min_neighbors: int = 3,
                 eyes: bool = True):
        self.face_cascade = _cascade("haarcascade_frontalface_default.xml")
        self.eye_cascade = _cascade("haarcascade_eye.xml") if eyes else None
        self.detection_size = detection_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscale(image, self.detection_size)
        return self._scan(image, small, scale, np.zeros(2, np.float32), near=False)

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        """Faces found again near known boxes: each neighbourhood scanned alone for faces 0.8-1.35 times as big."""
        _check_image(image)
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
            faces += self._scan(image, small, (x1 - x0) / size[0], np.array([x0, y0], np.float32), near=True)
        return _suppress(faces)

    def _scan(self, image: np.ndarray, small: np.ndarray, scale: float, origin: np.ndarray,
              near: bool) -> list[Face]:
        """Faces in `small` (a part of `image` at `origin`, shrunk by 1/scale) in image pixels, with their eyes."""
        sizes = {"minSize": (24, 24), "maxSize": (int(1.35 * self.roi_face_px),) * 2} if near else {}
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
            faces.append(Face(box, float(n) / (float(n) + self.min_neighbors), landmarks))
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


def _cascade(filename: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / filename
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelFileError(f"{path}: Haar cascade missing or unreadable (reinstall opencv-python)")
    return cascade


class YuNetDetector:
    """OpenCV's YuNet CNN (cv2.FaceDetectorYN): boxes, 5 landmarks and a score per face.

    `detect_near` scans the whole image: a YuNet run costs about as much (1.5-2 ms) for one
    face's neighbourhood as for a 320-pixel frame.
    """

    name = "yunet"

    def __init__(self, model_path: str | Path | None, detection_size: int = 320, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000):
        if not model_path:
            raise ModelFileError("the yunet detector needs its model file (detector_model / --detector-model, "
                                 "e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such YuNet model file")
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (32, 32), score_threshold, nms_threshold, top_k)
            self.net.detect(np.zeros((32, 32, 3), np.uint8))  # a foreign ONNX graph fails only when run
        except cv2.error as e:
            raise ModelFileError(f"{path}: not a YuNet face detector model ({_cv_reason(e)})") from None
        self.path = path
        self.detection_size = detection_size
        self._input_size = (32, 32)

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscale(image, self.detection_size)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self.net.setInputSize(size)
            self._input_size = size
        try:
            _, rows = self.net.detect(small)
        except cv2.error as e:
            reason = _cv_reason(e)
            raise ModelFileError(f"{self.path}: YuNet failed on a {size[0]}x{size[1]} image ({reason})") from None
        if rows is None:
            return []
        rows = rows.astype(np.float32)
        rows[:, :14] *= scale
        return [Face(r[:4].copy(), float(r[14]), r[4:14].reshape(5, 2).copy()) for r in rows]

    def detect_near(self, image: np.ndarray, boxes) -> list[Face]:
        return self.detect(image)


def _cv_reason(error: cv2.error) -> str:
    """The message of an OpenCV exception without its source location: "Failed to parse ONNX model"."""
    text = " ".join(str(error).split())
    if "error: (" in text:
        text = text.split("error: (", 1)[1].split(") ", 1)[-1]
    return text.split(" in function")[0]


def make_detector(name: str = "haar", model_path: str | Path | None = None, **options) -> Detector:
    """A detector by name: "haar" (built in) or "yunet" (needs `model_path`); options go to its constructor."""
    if name == "haar":
        return HaarDetector(**options)
    if name == "yunet":
        return YuNetDetector(model_path, **options)
    raise ValueError(f"unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}")
