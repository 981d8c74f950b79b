"""sensor_msgs/Image and CompressedImage payloads to BGR uint8 arrays, without cv_bridge.

ROS names: ``yuv422`` is UYVY and ``yuv422_yuy2`` is YUYV (sensor_msgs/image_encodings);
``uyvy`` and ``yuyv`` are accepted as well. ``mono16`` keeps its high byte. Generic OpenCV
type names (``8UC1``, ``8UC3``, ``8UC4``, ``16UC1``) are read as mono8, bgr8, bgra8, mono16.
"""

import cv2
import numpy as np

from .errors import ImageError

#: encoding -> (channels, bytes per channel, cv2 conversion to BGR or None)
_LAYOUT = {
    "bgr8": (3, 1, None),
    "rgb8": (3, 1, cv2.COLOR_RGB2BGR),
    "mono8": (1, 1, cv2.COLOR_GRAY2BGR),
    "bgra8": (4, 1, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, 1, cv2.COLOR_RGBA2BGR),
    "mono16": (1, 2, cv2.COLOR_GRAY2BGR),
    "yuv422": (2, 1, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": (2, 1, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2BGR_YUYV),
    "yuyv": (2, 1, cv2.COLOR_YUV2BGR_YUYV),
}
_ALIASES = {"8uc1": "mono8", "8uc3": "bgr8", "8uc4": "bgra8", "16uc1": "mono16"}

#: every encoding `image_to_bgr` reads
ENCODINGS = tuple(_LAYOUT)

#: image file types OpenCV reads, for folders of images (infer, bag from-images, datasets)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def image_to_bgr(data: bytes | np.ndarray, encoding: str, width: int, height: int, step: int | None = None,
                 big_endian: bool = False) -> np.ndarray:
    """A raw image buffer (bytes or array, rows `step` bytes apart) as an (H, W, 3) uint8 BGR array.

    bgr8 input is returned as a view when possible (it may be read-only): copy before drawing on it.
    Raises ImageError for an empty, truncated or wrongly strided buffer or an unknown encoding.
    """
    name = _ALIASES.get(encoding.lower(), encoding.lower())
    if name not in _LAYOUT:
        raise ImageError(f"unknown image encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    channels, depth, conversion = _LAYOUT[name]
    if width <= 0 or height <= 0:
        raise ImageError(f"empty {encoding} image ({width}x{height})")
    if channels == 2 and width % 2:
        raise ImageError(f"{encoding} image width {width} is odd: YUV 4:2:2 packs pixel pairs")
    row = width * channels * depth
    step = row if step is None else step
    if step < row:
        raise ImageError(f"{encoding} image {width}x{height}: step {step} is shorter than a row ({row} bytes)")
    if step % depth:
        raise ImageError(f"{encoding} image: step {step} is not a multiple of the {depth}-byte sample")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageError(f"empty {encoding} image buffer (expected {step * height} bytes for {width}x{height})")
    if buf.size != step * height:
        what = "truncated" if buf.size < step * height else "oversized"
        raise ImageError(f"{what} {encoding} image: {buf.size} bytes, expected step {step} x height {height}"
                         f" = {step * height} for {width}x{height}")
    rows = buf.reshape(height, step)[:, :row]
    if depth == 2:
        order = ">u2" if big_endian else "<u2"
        pixels = np.ascontiguousarray(rows).view(order).reshape(height, width) >> 8
        return cv2.cvtColor(pixels.astype(np.uint8), conversion)
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    return pixels if conversion is None else cv2.cvtColor(pixels, conversion)


def _as_bytes(data: bytes | np.ndarray) -> np.ndarray:
    """A flat uint8 view of a bytes-like object or an array (any dtype, C-contiguous)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, np.uint8)
    except TypeError:
        raise ImageError(f"image data must be bytes or a numpy array, not {type(data).__name__}") from None


def decode_compressed(data: bytes | np.ndarray) -> np.ndarray:
    """A JPEG/PNG (sensor_msgs/CompressedImage) payload as a BGR uint8 array; ImageError if undecodable."""
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageError("empty compressed image")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"compressed image of {buf.size} bytes could not be decoded (not a complete JPEG/PNG)")
    return image
