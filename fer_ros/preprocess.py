"""The one function that turns grey face crops into model input, for training and inference.

Train/serve skew is the classic facial-expression bug: training (`fer_ros.learning.data`), the
runtime pipeline and export all call `to_input`, and model files record `NORMALIZATION`
so a backend can check it was trained the same way.
"""

import cv2
import numpy as np

INPUT_SIZE = 48
#: model input = (grey - mean) / std, grey in 0..255
NORMALIZATION = {"mean": 0.0, "std": 255.0}


def to_input(crops, size: int = INPUT_SIZE, mean: float | list = NORMALIZATION["mean"],
             std: float = NORMALIZATION["std"], channels: int = 1,
             interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Grey uint8 crops, (N, H, W) array or list of (H, W), to float32 (N, channels, size, size).

    Crops of another size are resized with `interpolation`; grey is replicated to `channels`;
    `mean` is one grey level or one per channel (e.g. an RGB teacher's mean colour).
    """
    if isinstance(crops, np.ndarray) and crops.ndim == 3 and crops.shape[1:] == (size, size):
        batch = crops
    else:
        batch = np.stack([c if c.shape == (size, size)
                          else cv2.resize(c, (size, size), interpolation=interpolation)
                          for c in crops]) if len(crops) else np.zeros((0, size, size), np.uint8)
    out = batch.astype(np.float32)[:, None]
    if channels > 1:
        out = np.repeat(out, channels, axis=1)
    out -= mean if np.isscalar(mean) else np.asarray(mean, np.float32).reshape(1, channels, 1, 1)
    out *= 1.0 / std
    return out


def model_input(crops, metadata: dict) -> np.ndarray:
    """`to_input` for the model a checkpoint's metadata describes (input_size, in_channels, normalization).

    Crops smaller than the input size (48x48 for the 112x112 face-api.js teacher) are enlarged
    bilinearly, the interpolation face-api.js itself resizes with (tf.image.resizeBilinear, canvas
    scaling); bicubic scores no better overall. Larger crops are area-averaged, as `to_input` does.
    """
    size, norm = metadata["input_size"], metadata["normalization"]
    small = len(crops) > 0 and min(crops[0].shape) < size
    return to_input(crops, size, norm["mean"], norm["std"], channels=metadata["in_channels"],
                    interpolation=cv2.INTER_LINEAR if small else cv2.INTER_AREA)


def magnify(batch: np.ndarray, factor: float) -> np.ndarray:
    """Model input (N, C, H, W) with the centre of each image magnified `factor` times (bilinear)."""
    n, c, h, w = batch.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, factor)
    planes = [cv2.warpAffine(p, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
              for p in batch.reshape(n * c, h, w)]
    return np.stack(planes).reshape(batch.shape) if planes else batch.copy()
