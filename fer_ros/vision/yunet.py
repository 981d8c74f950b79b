"""YuNet, OpenCV Zoo's face detector, run by ONNX Runtime with OpenCV's own pre- and post-processing.

`cv2.FaceDetectorYN` reads the 2023mar model only from OpenCV 4.8 on (Ubuntu 22.04 ships 4.5.4,
Debian 12 and Ubuntu 24.04 4.6.0); ONNX Runtime, which the runtime has anyway, runs it on any
OpenCV. The steps are those of OpenCV's `face_detect.cpp`: the BGR image is padded at the bottom
and right to a multiple of 32, fed as raw 0..255 floats; each of the strides 8, 16 and 32 gives
per cell a class and an objectness score (the face score is the square root of their product),
a box (centre offset, log size) and 5 landmarks; overlapping boxes are suppressed by IoU.

The model file declares a fixed 640x640 input although its graph is fully convolutional:
`free_input_size` rewrites those dimensions (in the protobuf, without the onnx package) so each
frame runs at its own size instead of being padded to 640x640.
"""

from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelFileError

STRIDES = (8, 16, 32)
#: YuNet 2023mar from OpenCV Zoo, the file `fer-ros models fetch` downloads and checks
MODEL_NAME = "face_detection_yunet_2023mar.onnx"
MODEL_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
MODEL_URL = ("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
             "face_detection_yunet_2023mar.onnx")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _fields(buf: bytes):
    """(field number, wire type, payload bytes or int, the field's raw bytes) of a protobuf message."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise ValueError("the message is cut short")
        yield number, wire, value, buf[start:i]


def _message(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _rewrite(buf: bytes, path: tuple[int, ...], edit) -> bytes:
    """`buf` with every sub-message at field path `path` replaced by edit(sub-message)."""
    out = bytearray()
    for number, wire, value, raw in _fields(buf):
        if number == path[0] and wire == 2:
            out += _message(number, edit(value) if len(path) == 1 else _rewrite(value, path[1:], edit))
        else:
            out += raw
    return bytes(out)


def _free_dims(first_free: int):
    """Edit of a TensorShapeProto: dimensions from index `first_free` on become named (free) ones."""
    def edit(shape: bytes) -> bytes:
        dims = [value for number, wire, value, _ in _fields(shape) if number == 1 and wire == 2]
        return b"".join(_message(1, d if k < first_free else _message(2, f"d{k}".encode()))
                        for k, d in enumerate(dims))
    return edit


def free_input_size(model: bytes) -> bytes:
    """The ONNX model with the height and width of its inputs, and the length of its outputs, left free.

    Paths: ModelProto.graph (7) -> input (11) / output (12) -> type (2) -> tensor_type (1) -> shape (2).
    """
    model = _rewrite(model, (7, 11, 2, 1, 2), _free_dims(2))
    return _rewrite(model, (7, 12, 2, 1, 2), _free_dims(1))


#: the outputs a YuNet graph has: class and objectness scores, boxes and landmarks per stride
OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES)
#: smaller than any ONNX file that could hold YuNet's weights (the 2023mar file is 232,589 bytes)
MIN_BYTES = 50_000


def _io_names(model: bytes) -> tuple[list[str], list[str]]:
    """(input names, output names) of an ONNX ModelProto's graph, read from the protobuf."""
    graph = [v for number, wire, v, _ in _fields(model) if number == 7 and wire == 2]
    if len(graph) != 1:
        raise ValueError("no graph")
    names: dict[int, list[str]] = {11: [], 12: []}
    for number, wire, value, _ in _fields(graph[0]):
        if number in names and wire == 2:
            names[number] += [v.decode("utf-8", "replace") for n, w, v, _ in _fields(value) if n == 1 and w == 2]
    return names[11], names[12]


def read_model(path: str | Path) -> bytes:
    """The bytes of a YuNet model file, after the one check every user of it makes (`find_yunet`, `fetch`,
    the detector): a file, of a plausible size, ONNX (protobuf, ir_version first), whose graph has one
    input and YuNet's outputs. ModelFileError saying which of these fails."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, not a YuNet model file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) < MIN_BYTES:
        raise ModelFileError(f"{path}: {len(data)} bytes, too small for YuNet ({MODEL_NAME} is 232,589 bytes): "
                             "an empty or cut download?")
    if data[:1] != b"\x08":  # ModelProto field 1 (ir_version), a varint, comes first
        raise ModelFileError(f"{path}: not an ONNX model (it starts with {data[:8]!r})")
    try:
        inputs, outputs = _io_names(data)
    except (ValueError, IndexError):
        raise ModelFileError(f"{path}: not a whole ONNX model (its protobuf is cut short or damaged: a cut "
                             "download?)") from None
    if len(inputs) != 1 or not set(OUTPUTS) <= set(outputs):
        raise ModelFileError(f"{path}: an ONNX model, but not YuNet: its graph has inputs {inputs[:3]} and "
                             f"outputs {outputs[:4]}{', ...' if len(outputs) > 4 else ''}, not one input and "
                             f"{', '.join(OUTPUTS[:3])}, ... (the expression classifier's ONNX?)")
    return data


class YuNet:
    """Faces of a BGR uint8 image as OpenCV's FaceDetectorYN rows: (N, 15) float32 x, y, w, h,
    5 landmarks (x, y) and the score."""

    def __init__(self, path: str | Path, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 5000, threads: int = 1):
        import onnxruntime as ort

        path = Path(path)
        try:
            model = free_input_size(read_model(path))
        except (ValueError, IndexError):
            raise ModelFileError(f"{path}: not a YuNet face detector model (its graph does not parse)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            reason = str(e).splitlines()[0].split(" : ")[-1]
            raise ModelFileError(f"{path}: not a YuNet face detector model ({reason})") from None
        self.outputs = list(OUTPUTS)
        self.input = self.session.get_inputs()[0].name
        self.path = path
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        out = dict(zip(self.outputs, self.session.run(self.outputs, {self.input: blob}), strict=True))
        rows = []
        for s in STRIDES:
            cols = pw // s
            score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            if not len(keep):
                continue
            cell = np.stack([keep % cols, keep // cols], 1).astype(np.float32)
            box, kps = out[f"bbox_{s}"][0, keep], out[f"kps_{s}"][0, keep].reshape(-1, 5, 2)
            size = np.exp(box[:, 2:4]) * s
            corner = (cell + box[:, :2]) * s - size / 2
            marks = (kps + cell[:, None]) * s
            rows.append(np.hstack([corner, size, marks.reshape(-1, 10), score[keep, None]]))
        if not rows:
            return np.zeros((0, 15), np.float32)
        rows = np.vstack(rows).astype(np.float32)
        if len(rows) > 1:
            boxes = rows[:, :4].astype(np.int32).tolist()  # OpenCV suppresses on integer boxes
            keep = cv2.dnn.NMSBoxes(boxes, rows[:, 14].tolist(), self.score_threshold, self.nms_threshold,
                                    top_k=self.top_k)
            rows = rows[np.asarray(keep, np.int64).reshape(-1)]
        return rows
