"""sensor_msgs/Image encodings to BGR, checked against OpenCV's own conversions."""

import cv2
import numpy as np
import pytest

from fer_ros.encodings import ENCODINGS, decode_compressed, image_to_bgr
from fer_ros.errors import ImageError

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
    to, back = {"rgb8": (cv2.COLOR_BGR2RGB, cv2.COLOR_RGB2BGR), "bgra8": (cv2.COLOR_BGR2BGRA, cv2.COLOR_BGRA2BGR),
                "rgba8": (cv2.COLOR_BGR2RGBA, cv2.COLOR_RGBA2BGR),
                "yuv422": (cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
                "uyvy": (cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
                "yuv422_yuy2": (cv2.COLOR_BGR2YUV_YUYV, cv2.COLOR_YUV2BGR_YUYV),
                "yuyv": (cv2.COLOR_BGR2YUV_YUYV, cv2.COLOR_YUV2BGR_YUYV)}[encoding]
    buf = cv2.cvtColor(bgr, to)
    return buf, cv2.cvtColor(buf, back)


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
