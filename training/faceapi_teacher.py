"""Convert face-api.js's FaceExpressionNet (MIT) into a fer_ros checkpoint, for distillation (`teacher:`).

    python training/faceapi_teacher.py --weights ../face-api.js/weights --out runs/faceapi/faceapi.pt
    python training/faceapi_teacher.py --out runs/faceapi/faceapi.pt     # downloads from GitHub

--weights is a folder holding face_expression_model-weights_manifest.json and its shard(s)
(a face-api.js checkout's weights/), or a URL of such a folder. Downloads are checked against
the sha256 of face-api.js's published files (--no-pin to accept others). The checkpoint's
metadata: arch faceapi_expression, classes FER7, 112x112 RGB input, normalization
(rgb - [122.782, 117.001, 104.298]) / 255; build its input with fer_ros.preprocess.model_input.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.learning import checkpoint, faceapi  # noqa: E402
from fer_ros.vision.detector_model import ChecksumError, fetch  # noqa: E402

DEFAULT_URL = "https://raw.githubusercontent.com/justadudewhohacks/face-api.js/master/weights"
#: sha256 of face-api.js's published face_expression_model files (v0.22.2, unchanged since 2019)
PINNED = {
    "face_expression_model-weights_manifest.json": "960cbe959fe0328965dd18662d839f197df6e27607da4f726cd0c826e47fc936",
    "face_expression_model-shard1": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
}


def download(url: str, folder: Path, pin: bool) -> Path:
    """Fetch the manifest and the shards it names from `url` into `folder`; returns `folder`."""
    def get(name: str) -> bytes:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"refusing manifest path {name!r}: shards must be plain file names")
        try:
            path = fetch(f"{url.rstrip('/')}/{name}", folder / name, PINNED.get(name, "") if pin else None)
        except ChecksumError as e:
            raise ValueError(f"{url}/{name}: sha256 {e.got} is not face-api.js's published file "
                             "(--no-pin to accept)") from None
        return path.read_bytes()

    manifest = json.loads(get(f"{faceapi.MODEL_NAME}-weights_manifest.json"))
    for group in manifest:
        for name in group["paths"]:
            get(name)
    return folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEFAULT_URL, help="folder or URL of the tfjs weights (default: %(default)s)")
    p.add_argument("--out", default="runs/faceapi/faceapi.pt", type=Path)
    p.add_argument("--no-pin", action="store_true", help="accept downloaded files with other checksums")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        remote = args.weights.startswith(("http://", "https://"))
        source = download(args.weights, Path(tmp), not args.no_pin) if remote else Path(args.weights)
        model = faceapi.load_weights(source)
    meta = {**faceapi.metadata(), "weights_from": args.weights}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(args.out, model, meta)
    print(f"wrote {args.out}: {meta['arch']}, classes {', '.join(meta['classes'])}, "
          f"{meta['input_size']}x{meta['input_size']}x{meta['in_channels']}, normalization {meta['normalization']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
