"""Face crops framed like FER2013's 48x48 images: eyes level, grey, resized to the model's input.

FER2013's framing was measured on 1,500 of its training images (upscaled 4x): OpenCV's
frontal-face Haar box covers the whole 48x48 image (median x, y = 0.005, side 0.98), and
YuNet's landmarks sit at `TEMPLATE` (fractions of the crop). So:

- 5 landmarks (YuNet): the similarity transform that best maps them onto `TEMPLATE`;
- eyes only (Haar + eye cascade): the box's square, rotated about its centre to level the eyes;
- a box only: the box's square (side max(w, h)).

`margin` widens the crop by that fraction of its side on each side (0 = FER2013 framing).
Parts of a crop outside the image repeat the image's edge pixels.
"""

import cv2
import numpy as np

from .faces import TEMPLATE, Face

#: a crop is warped at most this many times the output size, then area-resized (avoids aliasing)
_OVERSAMPLE = 4


def crop_matrix(face: Face, margin: float = 0.0) -> np.ndarray:
    """2x3 affine matrix from source pixels to unit crop coordinates (the crop is [0, 1]^2)."""
    lm = face.landmarks
    if lm is not None and not np.isnan(lm).any():
        dst = 0.5 + (TEMPLATE - 0.5) / (1.0 + 2.0 * margin)
        return _similarity(lm.astype(np.float64), dst.astype(np.float64))
    x, y, w, h = (float(v) for v in face.box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2, y + h / 2
    eyes = face.eyes
    angle = 0.0 if eyes is None else float(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    c, s = np.cos(angle) / side, np.sin(angle) / side
    # rotate by -angle about the box centre, scale to unit size, centre at (0.5, 0.5)
    return np.array([[c, s, 0.5 - c * cx - s * cy], [-s, c, 0.5 + s * cx - c * cy]])


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src points onto dst."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    norm = (s ** 2).sum()
    a = (s * d).sum() / norm
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def crop_face(image: np.ndarray, face: Face, size: int = 48, margin: float = 0.0,
              out: np.ndarray | None = None) -> np.ndarray:
    """A (size, size) uint8 grey crop of `face` from a BGR or grey image (written into `out` if given)."""
    m = crop_matrix(face, margin)
    scale = float(np.hypot(m[0, 0], m[0, 1]))  # unit crop per source pixel
    work = int(min(_OVERSAMPLE * size, max(size, round(1.0 / scale))))
    warped = cv2.warpAffine(image, m * work, (work, work), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if warped.ndim == 3:
        warped = cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY)
    if work == size:
        if out is None:
            return warped
        out[...] = warped
        return out
    return cv2.resize(warped, (size, size), dst=out, interpolation=cv2.INTER_AREA)


def crop_faces(image: np.ndarray, faces: list[Face], size: int = 48, margin: float = 0.0) -> np.ndarray:
    """(N, size, size) uint8 grey crops, one per face, ready for `fer_ros.preprocess.to_input`."""
    crops = np.empty((len(faces), size, size), np.uint8)
    for face, out in zip(faces, crops, strict=True):
        crop_face(image, face, size, margin, out)
    return crops
