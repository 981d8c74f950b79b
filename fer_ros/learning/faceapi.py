"""face-api.js's FaceExpressionNet (MIT, github.com/justadudewhohacks/face-api.js) rebuilt in PyTorch.

A distillation teacher. The network, from face-api.js's FaceFeatureExtractor and FaceProcessor:

- input: 112x112 RGB, ``(pixel - MEAN_RGB) / 255``;
- four dense blocks (32, 64, 128, 256 channels), each halving the resolution (112 -> 7):
  ``a = relu(conv0(x)); b = conv1(a); c = conv2(relu(a + b)); d = conv3(relu(a + b + c));``
  ``out = relu(a + b + c + d)``; conv0 of the first block is a plain 3x3 conv, every other conv a
  depthwise-separable 3x3 (depthwise, then pointwise with bias); all strided convs are stride 2;
- TensorFlow "same" padding (for stride 2 on an even size: one row/column, bottom/right only);
- 7x7 average pool (stride 2, valid), a 256 -> 7 linear layer; face-api.js applies softmax.

`load_weights` reads face-api.js's tfjs files (``<name>-weights_manifest.json`` + shards) and
permutes the output rows so that the module's classes are `FER7`, in that order. Like the
project's models it returns logits.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classes import FER7, canonical

ARCH = "faceapi_expression"
MODEL_NAME = "face_expression_model"
INPUT_SIZE = 112
#: face-api.js's input normalization: (rgb - mean) / std, per channel R, G, B, on 0..255
MEAN_RGB = (122.782, 117.001, 104.298)
NORMALIZATION = {"mean": list(MEAN_RGB), "std": 255.0}
#: face-api.js's output order (FACE_EXPRESSION_LABELS)
FACEAPI_CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: FER7_FROM_FACEAPI[i] = face-api.js's index of FER7[i]
FER7_FROM_FACEAPI = tuple([canonical(c) for c in FACEAPI_CLASSES].index(c) for c in FER7)
WIDTHS = (32, 64, 128, 256)


def metadata() -> dict:
    """fer_ros checkpoint metadata for the converted net."""
    return {"arch": ARCH, "classes": list(FER7), "input_size": INPUT_SIZE, "in_channels": 3,
            "normalization": dict(NORMALIZATION), "channel_order": "RGB",
            "source": "face-api.js FaceExpressionNet (MIT), weights/face_expression_model"}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: the odd pixel of padding goes after (bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                        (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(F.pad(x, pads), self.weight, self.bias)


class SeparableConv(nn.Module):
    """tf.separableConv2d + bias: depthwise 3x3 (strided, no bias), then pointwise 1x1 with bias."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.depthwise = SameConv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DenseBlock(nn.Module):
    """face-api.js's denseBlock4: a strided conv then three separable convs fed the running sums."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.conv0 = SameConv2d(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1, self.conv2, self.conv3 = (SeparableConv(cout, cout) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.relu(self.conv0(x))
        for conv in (self.conv1, self.conv2, self.conv3):
            total = total + conv(torch.relu(total))  # relu is a no-op before conv1: total is relu'd
        return torch.relu(total)


class FaceExpressionNet(nn.Module):
    """(N, 3, 112, 112) normalized RGB -> (N, 7) logits, classes FER7 once `load_weights` has run."""

    def __init__(self, n_classes: int = 7, in_channels: int = 3):
        super().__init__()
        if (n_classes, in_channels) != (7, 3):
            raise ValueError(f"{ARCH} has 3 input channels and 7 classes, not {in_channels} and {n_classes}")
        widths = (in_channels,) + WIDTHS
        self.dense0, self.dense1, self.dense2, self.dense3 = (
            DenseBlock(widths[i], widths[i + 1], first=i == 0) for i in range(4))
        self.pool = nn.AvgPool2d(7, stride=2)
        self.fc = nn.Linear(WIDTHS[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return self.fc(self.pool(x).flatten(1))


# ---- tfjs weights ---------------------------------------------------------------------------------

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def decode_weights(manifest: list, read: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """tf.io.decodeWeights: {name: array} from a weights manifest; `read(path)` returns a shard's bytes.

    Each group's shards are concatenated and its weights read in order; a weight with
    ``quantization`` {dtype uint8/uint16, scale, min} is ``q * scale + min`` (in float64 as
    JavaScript computes it, then cast; rounded for int32), {dtype float16} is half floats.
    """
    out = {}
    for group in manifest:
        buf = b"".join(read(p) for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            name, shape, dtype, quant = w["name"], tuple(w["shape"]), w["dtype"], w.get("quantization")
            if dtype not in _DTYPES:
                raise ValueError(f"weight {name}: unsupported dtype {dtype!r}")
            stored = _QUANT.get(quant["dtype"]) if quant else _DTYPES[dtype]
            if stored is None:
                raise ValueError(f"weight {name}: unsupported quantization {quant['dtype']!r}")
            count = math.prod(shape)
            size = count * np.dtype(stored).itemsize
            if offset + size > len(buf):
                raise ValueError(f"weight {name}: the shards {group['paths']} end before its {size} bytes")
            values = np.frombuffer(buf, stored, count, offset)
            offset += size
            if quant and quant["dtype"] != "float16":
                values = values * float(quant["scale"]) + float(quant["min"])
                if dtype == "int32":
                    values = np.round(values)
            out[name] = values.astype(_DTYPES[dtype]).reshape(shape)
    return out


def _tfjs_name(param: str) -> str:
    """tfjs weight name of a state-dict entry of FaceExpressionNet."""
    parts = param.split(".")
    if parts[0] == "fc":
        return f"fc/{'weights' if parts[1] == 'weight' else 'bias'}"
    block, conv, *rest = parts
    kind = {("weight",): "filters", ("bias",): "bias", ("depthwise", "weight"): "depthwise_filter",
            ("pointwise", "weight"): "pointwise_filter", ("pointwise", "bias"): "bias"}[tuple(rest)]
    return f"{block}/{conv}/{kind}"


def state_dict_from_tfjs(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """FaceExpressionNet state dict (classes in FER7 order) from face-api.js's tfjs weights.

    Layouts: conv HWIO -> OIHW, depthwise HWC1 -> C1HW, dense (in, out) -> (out, in).
    """
    names = {_tfjs_name(p): p for p in FaceExpressionNet().state_dict()}
    if set(weights) != set(names):
        raise ValueError(f"not face-api.js FaceExpressionNet weights: missing {sorted(set(names) - set(weights))}, "
                         f"unexpected {sorted(set(weights) - set(names))}")
    state = {}
    for tf_name, value in weights.items():
        t = torch.from_numpy(np.ascontiguousarray(value, np.float32))
        if t.ndim == 4:
            t = t.permute(2, 3, 0, 1) if tf_name.endswith("depthwise_filter") else t.permute(3, 2, 0, 1)
        elif t.ndim == 2:
            t = t.T
        if tf_name.startswith("fc/"):
            t = t[list(FER7_FROM_FACEAPI)]
        state[names[tf_name]] = t.contiguous()
    return state


def read_manifest(source: str | Path) -> tuple[list, Path]:
    """(manifest, folder of its shards) from a manifest file or a folder holding face_expression_model's."""
    path = Path(source)
    if path.is_dir():
        path = path / f"{MODEL_NAME}-weights_manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no face-api.js weights manifest")
    return json.loads(path.read_text()), path.parent


def load_weights(source: str | Path, model: FaceExpressionNet | None = None) -> FaceExpressionNet:
    """A FaceExpressionNet (eval mode) with face-api.js's weights from a manifest or its folder."""
    manifest, folder = read_manifest(source)
    model = model or FaceExpressionNet()
    model.load_state_dict(state_dict_from_tfjs(decode_weights(manifest, lambda p: (folder / p).read_bytes())))
    return model.eval()
