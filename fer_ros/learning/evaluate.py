"""`fer-ros evaluate`: score a model file on FER2013 / FER+ CSVs or an image folder."""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..cli import atomic_output, check_output, number
from ..config import FACE_FIELDS, load_config, overrides_from
from ..config import add_arguments as config_arguments
from ..errors import DataError
from ..metrics import classification_report, format_report
from ..wording import plural
from .data import CROP_MODES, EXPECTED_SKIPS, Dataset, load_dataset


def add_arguments(p) -> None:
    p.add_argument("--model", action="append",
                   help="checkpoint (.pt), ONNX or TensorRT engine (default: the shipped model); repeat it "
                        "to score an ensemble, the mean of the models' probabilities")
    p.add_argument("--data", required=True,
                   help="FER2013 CSV (.csv/.csv.gz), FER+ votes CSV (with --pixels) or a folder of class folders")
    p.add_argument("--split", help="CSV Usage split, e.g. PublicTest (default: every row)")
    p.add_argument("--pixels", help="FER2013 CSV holding the pixels, when --data is the FER+ votes CSV")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "torch", "tensorrt"), default="auto",
                   help="inference backend (default: from the model file's suffix)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--flip", action="store_true", help="average each face with its mirror image")
    p.add_argument("--zoom", type=zoom_factor, default=1.0, metavar="FACTOR",
                   help="also average each face with its centre magnified FACTOR times, e.g. 1.1 (default: off)")
    p.add_argument("--limit", type=number(int, 0), default=0, help="score only the first N images (0 = all)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad CSV rows instead of stopping")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix plot here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    g = p.add_argument_group("image folders: how faces are found and framed",
                             "a CSV holds 48x48 crops already: these options are refused with one")
    g.add_argument("--crops", choices=CROP_MODES, default="auto",
                   help="auto: images of the model's input size (48x48 crops, e.g. CK+48) are scored as they are, "
                        "faces are found in any other; crops: every image is a face crop; faces: find the face in "
                        "every image (default: %(default)s)")
    g.add_argument("--config", metavar="YAML", help="ROS 2 parameters file with the face parameters below "
                   "(default: the shipped parameters; Haar scans still images thoroughly)")
    config_arguments(p, FACE_FIELDS)


def _check_framing_options(args) -> None:
    """The framing options (--crops, --config, the face parameters) apply to image folders only: a CSV holds crops."""
    if Path(args.data).is_dir():
        return
    given = [f"--{name.replace('_', '-')}" for name in overrides_from(args, FACE_FIELDS)]
    given += [o for o, v in (("--crops", args.crops != "auto"), ("--config", args.config)) if v]
    if given:
        raise DataError(f"{', '.join(given)}: {args.data} is a CSV of 48x48 face crops, scored as they are; these "
                        "options say how faces are found in an image folder; drop them")


def zoom_factor(text: str) -> float:
    """argparse type of --zoom: a factor > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a zoom factor > 0 (1 = off, e.g. 1.1)")
    return value


def predict(backend, crops: np.ndarray, flip: bool = False, zoom: float = 1.0, batch: int = 256,
            progress: bool = True) -> np.ndarray:
    """Class probabilities for grey crops (N, H, W), in batches with a progress bar."""
    out = [backend.classify(crops[i:i + batch], flip, zoom) for i in
           tqdm(range(0, len(crops), batch), desc="scoring", unit="batch", disable=not progress, leave=False)]
    return np.concatenate(out) if out else np.zeros((0, len(backend.classes)), np.float32)


def to_model_labels(data: Dataset, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Map the dataset's labels to the model's class indices; drop (and count) classes it lacks."""
    lookup = np.array([classes.index(c) if c in classes else -1 for c in data.classes])
    y = lookup[data.labels]
    skipped = Counter({f"class unknown to the model: {data.classes[i]}": int(n)
                       for i, n in enumerate(np.bincount(data.labels[y < 0], minlength=len(data.classes))) if n})
    return np.flatnonzero(y >= 0), y[y >= 0], skipped


def evaluate(model: str | list[str] | None, data: str, split: str | None = None, pixels: str | None = None,
             backend: str = "auto", device: str = "cpu", flip: bool = False, zoom: float = 1.0,
             limit: int = 0, skip_bad: bool = False, progress: bool = True, faces=None, crops: str = "auto") -> dict:
    """The classification report of `model` (a list: their mean) on `data`, with what was skipped and why.

    Image folders are framed as `crops` says (see `fer_ros.learning.data.load_image_folder`), faces found and cropped
    as the `faces` PipelineConfig says (default: the shipped parameters), Haar scanning thoroughly.
    """
    from ..framing import Framer
    from ..inference import load_backend

    nets = [load_backend(m, backend, device) for m in (model if isinstance(model, list) else [model])]
    classes = tuple(nets[0].classes)
    for net in nets[1:]:
        if tuple(net.classes) != classes:
            raise DataError(f"{net.path}: its classes {net.classes} differ from {nets[0].path}'s {classes}")
    framer = None
    if Path(data).is_dir() and crops != "crops":
        framer = Framer(faces or load_config(), nets[0].input_size)
    dataset = load_dataset(data, split, pixels=pixels, skip_bad=skip_bad, classes=classes, framer=framer,
                           crops=crops)
    keep, y, skipped = to_model_labels(dataset, classes)
    if limit:
        keep, y = keep[:limit], y[:limit]
    if len(keep) == 0:
        raise DataError(f"{data}: no image has a class the model knows ({', '.join(classes)})")
    probs = sum(predict(net, dataset.images[keep], flip, zoom, progress=progress) for net in nets) / len(nets)
    report = classification_report(y, probs.argmax(1), classes)
    report["skipped"] = dict(dataset.skipped + skipped)
    report.update(model=" + ".join(str(net.path) for net in nets), data=str(data), split=split, flip=flip, zoom=zoom)
    if dataset.framing:
        report["framing"] = dict(dataset.framing)
        report["images_without_face"] = int(dataset.skipped.get("no face found", 0))
        report["images"] = int(sum(dataset.framing.values()) + report["images_without_face"])
        report["detector"] = getattr(framer and framer.detector, "note", None)
    return report


def _framed(how: str, n: int) -> str:
    """"haar found a face in 68 images", "3 as crops"."""
    if how.startswith("face found by "):
        return f"{how.removeprefix('face found by ')} found a face in {plural(n, 'image')}"
    return f"{n} {how}"


def run(args) -> int:
    check_output(args.confusion, "--confusion", "plot", inputs=[args.data, args.pixels, *(args.model or [])])
    _check_framing_options(args)
    model = args.model[0] if args.model and len(args.model) == 1 else args.model
    faces = load_config(args.config, **overrides_from(args, FACE_FIELDS))
    report = evaluate(model, args.data, args.split, args.pixels, args.backend, args.device, args.flip, args.zoom,
                      args.limit, args.skip_bad, faces=faces, crops=args.crops)
    print(format_report(report))
    if "framing" in report:
        print(f"framing: {', '.join(_framed(how, n) for how, n in report['framing'].items())}; "
              f"{report['images_without_face']} of {report['images']} images had no face"
              + (f" ({report['detector']})" if report["detector"] else ""))
    if report["skipped"]:
        print("skipped: " + ", ".join(f"{n} ({why})" for why, n in report["skipped"].items()))
    if args.confusion:
        from ..plots import plot_confusion

        with atomic_output(args.confusion) as tmp:
            plot_confusion(report["confusion"], report["classes"], tmp,
                           f"{Path(args.data).name} {args.split or ''}: acc {report['accuracy']:.3f}")
        print(f"wrote {args.confusion}")
    if args.json:
        print(json.dumps(report))
    return 1 if any(not why.startswith(EXPECTED_SKIPS) for why in report["skipped"]) else 0
