"""Bench section `detect`: how many faces each detector keeps, and at what frame time.

- Footage: every variant of `fer_ros.bench.footage` made from the real clips pyfeat_single_face.mp4,
  pyfeat_face_noface.mov (whose face leaves at frame 72) and pyfeat_noface_face.mov (a face comes).
  For Haar and YuNet with the default parameters and with a whole-frame scan every frame
  (detection_period_s 0, the reference): the
  median frame time, the frames with a face, the keep rate (frames with a face that the reference
  also reports, over the reference's; the goal is >= 0.99), the share of those frames on which both
  put the same label on the face, and the frames still reporting a face after it left.
- Photos: the real photos of ../shared (truth: YuNet at full resolution, score > 0.8) and harder
  sets made from the one-face photos (tilted 25 degrees either way; small in a 640x480 frame; the
  whole photo shrunk to 120 px). Per set, for plain and thorough Haar and YuNet: faces found and
  missed, and boxes that match no true face (false faces, or a true face's box placed badly); and
  the faces found on the 98 frames of pyfeat_no_face.mp4 (all false).
"""

import cv2
import numpy as np

from . import frame as frame_section
from .footage import VARIANTS, frames, keep_rate, make_variant
from .frame import SHARED

CLIPS = {"single_face": SHARED / "samples" / "video" / "pyfeat_single_face.mp4",
         "face_noface": SHARED / "samples" / "video" / "pyfeat_face_noface.mov",
         "noface_face": SHARED / "samples" / "video" / "pyfeat_noface_face.mov"}
NO_FACE = SHARED / "samples" / "video" / "pyfeat_no_face.mp4"
PHOTOS = SHARED / "samples" / "faces"
#: the frame of pyfeat_face_noface.mov from which on no face is in the picture
LEFT_AT = {"face_noface": 72}


def run(args) -> list[dict]:
    if not frame_section.YUNET.is_file() or not PHOTOS.is_dir():
        return [{"section": "detect", "case": "all", "note": f"skipped: needs {frame_section.YUNET} and {PHOTOS} "
                 "(../shared is beside source checkouts only); give YuNet with --detector-model"}]
    variants = ("original", "rotate+20", "dark", "small") if args.quick else VARIANTS
    return footage_rows(variants, limit=30 if args.quick else 0) + photo_rows()


def footage_rows(variants, limit: int = 0) -> list[dict]:
    from ..config import load_config
    from ..pipeline import Pipeline

    rows = []
    backend = None
    for detector in ("haar", "yunet"):
        model = str(frame_section.YUNET) if detector == "yunet" else None
        tried = Pipeline(load_config(detector=detector, detector_model=model), backend)
        backend = tried.backend
        reference = Pipeline(load_config(detector=detector, detector_model=model, detection_period_s=0.0), backend)
        for clip, path in CLIPS.items():
            if not path.is_file():
                continue
            for variant in variants:
                rows.append(_footage_row(tried, reference, detector, clip, path, variant, limit))
    return rows


def _footage_row(tried, reference, detector, clip, path, variant, limit) -> dict:
    keep = keep_rate(tried, reference, path, variant, limit, LEFT_AT.get(clip))
    return {"section": "detect", "case": f"{detector} {clip} {variant}", "frames": keep.frames,
            "default_ms": keep.tried_ms, "every_frame_ms": keep.reference_ms, "default_faces": keep.tried,
            "every_frame_faces": keep.reference, "keep_rate": keep.rate, "same_label": keep.agreement,
            "after_left": keep.after_left if clip in LEFT_AT else "", "ok": keep.rate >= 0.99}


def photo_sets() -> dict[str, list[np.ndarray]]:
    """The real photos, and harder sets made from the one-face ones."""
    from ..vision.faces import make_detector

    paths = sorted(p for p in PHOTOS.rglob("*.jpg"))
    photos = [cv2.imread(str(p)) for p in paths]
    truth = make_detector("yunet", frame_section.YUNET, detection_size=0, score_threshold=0.8)
    ones = [img for img in photos if len(truth.detect(img)) == 1]
    return {"photos": photos, "tilted+25": [make_variant(i, "rotate+25") for i in ones],
            "tilted-25": [make_variant(i, "rotate-25") for i in ones],
            "small in 640x480": [_small(i) for i in ones], "shrunk to 120 px": [_shrink(i, 120) for i in ones]}


def photo_rows() -> list[dict]:
    from ..vision.faces import iou, make_detector

    truth = make_detector("yunet", frame_section.YUNET, detection_size=0, score_threshold=0.8)
    detectors = {"haar": make_detector("haar"), "haar thorough": make_detector("haar", thorough=True),
                 "yunet": make_detector("yunet", frame_section.YUNET)}
    rows = []
    for name, images in photo_sets().items():
        boxes = [np.array([f.box for f in truth.detect(img)]).reshape(-1, 4) for img in images]
        for label, detector in detectors.items():
            found = missed = false = 0
            for img, want in zip(images, boxes, strict=True):
                got = np.array([f.box for f in detector.detect(img)]).reshape(-1, 4)
                overlap = iou(want, got) if len(got) and len(want) else np.zeros((len(want), len(got)))
                hit = overlap.max(1) > 0.3 if len(got) else np.zeros(len(want), bool)
                found += int(hit.sum())
                missed += int((~hit).sum())
                false += int((overlap.max(0) <= 0.1).sum()) if len(want) else len(got)
            rows.append({"section": "detect", "case": f"{label} on {name}", "images": len(images),
                         "faces": found + missed, "found": found, "missed": missed, "unmatched": false})
    if NO_FACE.is_file():
        clip = [frame for _, frame in frames(NO_FACE)]
        for label, detector in detectors.items():
            rows.append({"section": "detect", "case": f"{label} on pyfeat_no_face.mp4", "images": len(clip),
                         "faces": 0, "found": 0, "missed": 0, "unmatched": sum(len(detector.detect(f)) for f in clip)})
    return rows


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    s = side / max(image.shape[:2])
    return cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_AREA)


def _small(image: np.ndarray) -> np.ndarray:
    canvas = np.full((480, 640, 3), 110, np.uint8)
    small = _shrink(image, 200)
    canvas[50:50 + small.shape[0], 300:300 + small.shape[1]] = small
    return canvas
