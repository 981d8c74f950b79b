"""sensor_msgs/Image encodings to BGR, checked against OpenCV's own conversions."""

import cv2
import numpy as np
import pytest

from fer_ros.errors import ImageError
from fer_ros.vision.encodings import ENCODINGS, decode_compressed, image_to_bgr

H, W = 6, 8


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    """A smooth colour image: 4:2:2 chroma subsampling barely changes it."""
    y, x = np.mgrid[0:H, 0:W]
    return np.dstack([40 + 20 * x, 60 + 25 * y, 200 - 10 * x - 5 * y]).astype(np.uint8)


def encode(bgr: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(buffer as the camera would send it, the BGR OpenCV makes of that buffer)."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if encoding == "bgr8":
        return bgr, bgr
    if encoding == "mono8":
        return grey, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if encoding == "mono16":
        return grey.astype("<u2") * 257, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        uyvy = encoding in ("yuv422", "uyvy")
        buf = pack_422(bgr, uyvy)
        return buf, cv2.cvtColor(buf, cv2.COLOR_YUV2BGR_UYVY if uyvy else cv2.COLOR_YUV2BGR_YUYV)
    to, back = {"rgb8": (cv2.COLOR_BGR2RGB, cv2.COLOR_RGB2BGR), "bgra8": (cv2.COLOR_BGR2BGRA, cv2.COLOR_BGRA2BGR),
                "rgba8": (cv2.COLOR_BGR2RGBA, cv2.COLOR_RGBA2BGR)}[encoding]
    buf = cv2.cvtColor(bgr, to)
    return buf, cv2.cvtColor(buf, back)


def pack_422(bgr: np.ndarray, uyvy: bool) -> np.ndarray:
    """A 4:2:2 camera buffer (H, W, 2) of a BGR image: BT.601 studio-range Y, U, V, chroma averaged over
    pixel pairs, bytes U Y V Y (uyvy) or Y U Y V. Made with numpy: OpenCV before 4.7 cannot encode 4:2:2."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u, v = (c.reshape(c.shape[0], -1, 2).mean(2) for c in (u, v))
    y = y.reshape(y.shape[0], -1, 2)
    quads = [u, y[..., 0], v, y[..., 1]] if uyvy else [y[..., 0], u, y[..., 1], v]
    return np.clip(np.rint(np.stack(quads, -1)), 0, 255).astype(np.uint8).reshape(bgr.shape[0], bgr.shape[1], 2)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_converts_like_opencv(bgr, encoding):
    buf, want = encode(bgr, encoding)
    got = image_to_bgr(buf.tobytes(), encoding, W, H)
    assert got.shape == (H, W, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    # and the colours survive: a swapped channel or byte order would be far off
    grey_only = encoding.startswith("mono")
    ref = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if grey_only else bgr
    assert np.abs(got.astype(int) - ref).max() <= 12


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_padded_rows_and_array_input(bgr, encoding):
    buf, want = encode(bgr, encoding)
    rows = buf.reshape(H, -1).view(np.uint8)
    padded = np.zeros((H, rows.shape[1] + 6), np.uint8)
    padded[:, :rows.shape[1]] = rows
    np.testing.assert_array_equal(image_to_bgr(padded.tobytes(), encoding, W, H, step=padded.shape[1]), want)
    np.testing.assert_array_equal(image_to_bgr(buf, encoding, W, H), want)  # numpy array
    np.testing.assert_array_equal(image_to_bgr(bytearray(buf.tobytes()), encoding, W, H), want)


def test_mono16_big_endian_and_aliases(bgr):
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    want = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    big = (grey.astype(">u2") * 257).tobytes()
    np.testing.assert_array_equal(image_to_bgr(big, "mono16", W, H, big_endian=True), want)
    np.testing.assert_array_equal(image_to_bgr(bgr.tobytes(), "8UC3", W, H), bgr)
    np.testing.assert_array_equal(image_to_bgr(bgr.tobytes(), "BGR8", W, H), bgr)


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 0}, "empty"),
    ({"height": 0}, "empty"),
    ({"data": b""}, "empty"),
    ({"data": bytes(W * H * 3 - 1)}, "truncated"),
    ({"data": bytes(W * H * 3 + 5)}, "oversized"),
    ({"step": W * 3 - 1}, "shorter than a row"),
    ({"step": W * 3 + 2}, "truncated"),  # the right bytes for the wrong stride
    ({"encoding": "bayer_rggb8"}, "unknown image encoding 'bayer_rggb8'"),
    ({"encoding": "yuv422", "width": 3, "data": bytes(3 * H * 2)}, "odd"),
    ({"encoding": "mono16", "step": W * 2 + 1, "data": bytes((W * 2 + 1) * H)}, "multiple"),
    ({"data": "not bytes"}, "bytes or a numpy array"),
])
def test_bad_buffers_raise_image_error(kwargs, message):
    args = {"data": bytes(W * H * 3), "encoding": "bgr8", "width": W, "height": H, "step": None, **kwargs}
    with pytest.raises(ImageError, match=message):
        image_to_bgr(**args)


def test_compressed(bgr):
    ok, png = cv2.imencode(".png", bgr)
    np.testing.assert_array_equal(decode_compressed(png.tobytes()), bgr)
    with pytest.raises(ImageError, match="empty"):
        decode_compressed(b"")
    with pytest.raises(ImageError, match="could not be decoded"):
        decode_compressed(png.tobytes()[:20])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_bgr_as_cv_bridge(bgr, encoding):
    """The node decodes with cv_bridge where it is installed, else with image_to_bgr: both must agree."""
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge (ROS 2) is not installed")
    from sensor_msgs.msg import Image

    buf, _ = encode(bgr, encoding)
    msg = Image(height=H, width=W, encoding=encoding, is_bigendian=0, step=buf.nbytes // H, data=buf.tobytes())
    try:
        theirs = cv_bridge.CvBridge().imgmsg_to_cv2(msg, "bgr8")
    except cv_bridge.CvBridgeError as e:
        pytest.skip(f"cv_bridge cannot convert {encoding} ({e}): the node falls back to image_to_bgr")
    np.testing.assert_array_equal(image_to_bgr(buf.tobytes(), encoding, W, H), theirs)
