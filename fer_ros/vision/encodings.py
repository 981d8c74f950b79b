"""sensor_msgs/Image and CompressedImage payloads to BGR uint8 arrays, without cv_bridge.

ROS names: ``yuv422`` is UYVY and ``yuv422_yuy2`` is YUYV (sensor_msgs/image_encodings);
``uyvy`` and ``yuyv`` are accepted as well. ``mono16`` keeps its high byte. Generic OpenCV
type names (``8UC1``, ``8UC3``, ``8UC4``, ``16UC1``) are read as mono8, bgr8, bgra8, mono16.
"""

from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError

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

#: the largest image fer_ros takes (file, message or frame): at most MAX_SIDE pixels a side and MAX_PIXELS in all,
#: 8192 x 8192 (192 MB as BGR), which covers 8K video and 50-megapixel photos; one huge message must not take a
#: robot's memory, and faces in anything larger are found on a downscaled copy anyway
MAX_SIDE = 16384
MAX_PIXELS = 8192 * 8192


def check_size(width: int, height: int, what: str = "image") -> None:
    """ImageError when a `width` x `height` image is larger than MAX_SIDE / MAX_PIXELS (the one size bound)."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(f"{what} is {width}x{height} ({width * height / 1e6:.0f} megapixels), larger than fer_ros "
                         f"takes (at most {MAX_SIDE} pixels a side and {MAX_PIXELS / 1e6:.0f} megapixels); scale it "
                         "down first")


def check_frame(image) -> np.ndarray:
    """The pipeline's entry check: `image` as a BGR (H, W, 3) or grey (H, W) uint8 array ((H, W, 1) and BGRA
    (H, W, 4) are converted); ImageError for anything else, or one beyond the size bound."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0 \
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        got = f"{type(image).__name__}{f' of {image.dtype}' if isinstance(image, np.ndarray) else ''}"
        raise ImageError(f"not an image: expected a uint8 (H, W, 3) BGR or (H, W) grey array, got {got}"
                         f"{f' of shape {shape}' if shape is not None else ''}")
    check_size(image.shape[1], image.shape[0], "the frame")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def image_size(buf: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF, BMP or WebP file, without decoding it; None when
    the format is another or the header is incomplete."""
    b = _as_bytes(buf)[:1 << 16].tobytes() if isinstance(buf, np.ndarray) else bytes(buf[:1 << 16])
    try:
        if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR":
            return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
        if b[:6] in (b"GIF87a", b"GIF89a"):
            return int.from_bytes(b[6:8], "little"), int.from_bytes(b[8:10], "little")
        if b.startswith(b"BM") and len(b) >= 26:
            return (abs(int.from_bytes(b[18:22], "little", signed=True)),
                    abs(int.from_bytes(b[22:26], "little", signed=True)))
        if b.startswith(b"RIFF") and b[8:12] == b"WEBP":
            chunk = b[12:16]
            if chunk == b"VP8X":
                return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
            if chunk == b"VP8L":
                bits = int.from_bytes(b[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                return int.from_bytes(b[26:28], "little") & 0x3FFF, int.from_bytes(b[28:30], "little") & 0x3FFF
        if b.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 <= len(b):
                if b[i] != 0xFF:
                    return None
                marker = b[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                    i += 1 if marker == 0xFF else 2
                    continue
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                    return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
                i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    except (IndexError, ValueError):
        return None
    return None


def opencv_path(path: str | Path) -> str:
    """`path` as OpenCV's file functions take it; ImageError for a name that is not UTF-8 (a byte the file
    system allows but OpenCV's Python binding crashes on)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(f"{text.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')}: the name is not "
                         "UTF-8, which OpenCV cannot open; rename the file (or its folder)") from None
    return text


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """`image` encoded in the format of a file suffix (.jpg, .png, ...); ImageError when OpenCV cannot."""
    try:
        ok, buf = cv2.imencode(suffix.lower(), image)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"OpenCV cannot encode a {suffix} image; use .jpg or .png")
    return buf.tobytes()


def read_image(path: str | Path) -> np.ndarray:
    """An image file as BGR uint8, decoded as strictly as a CompressedImage (a truncated JPEG is an error, not a
    grey-filled picture as cv2.imread gives); ImageError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the image ({e.strerror or e})") from None
    try:
        return decode_compressed(data)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


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
    check_size(width, height, f"{encoding} image")
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
    size = image_size(buf)
    if size is not None:  # before decoding: a 20000x20000 PNG of a few kB must not allocate 1.2 GB
        check_size(*size, "compressed image")
    # a cut file decodes grey-filled on some OpenCV versions (4.6's libjpeg only warns): check its end marker
    if buf[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and b"IEND" not in buf[-64:].tobytes():
        raise ImageError(f"compressed image of {buf.size} bytes could not be decoded (a truncated PNG: it has no "
                         "IEND chunk)")
    if buf[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in buf[-64:].tobytes():
        raise ImageError(f"compressed image of {buf.size} bytes could not be decoded (a truncated JPEG: it has no "
                         "end-of-image marker)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"compressed image of {buf.size} bytes could not be decoded (not a complete JPEG/PNG)")
    check_size(image.shape[1], image.shape[0], "compressed image")
    return image
