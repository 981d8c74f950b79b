"""Bench section `detect`: how many faces each detector keeps, and at what frame time (the photo sets and
frame sizes defined here are measured by the `stills` section).

- Footage: every variant of `fer_ros.bench.footage` made from the real clips pyfeat_single_face.mp4,
  pyfeat_face_noface.mov (whose face leaves at frame 72) and pyfeat_noface_face.mov (a face comes).
  For Haar and YuNet with the default parameters and with a whole-frame scan every frame
  (detection_period_s 0, the reference): the
  median frame time, the frames with a face, the keep rate (frames with a face that the reference
  also reports, over the reference's; the goal is >= 0.99), the share of those frames on which both
  put the same label on the face, and the frames still reporting a face after it left.
- Photos (`photo_sets`): the real photos of ../shared, head-and-shoulders photos of data/extra/taiwan,
  and harder sets made from them (truth: YuNet at full resolution, score > 0.8). Per set, for the
  still-photo scan before issue 12 (`pre_issue_12`), plain Haar, Haar's still-photo scan and YuNet:
  faces found and missed, boxes that match no true face (false faces, or a true face's box placed
  badly), and the finds per stage; and the faces found on the 95 frames of pyfeat_no_face.mp4 (all false).
"""

import functools

import cv2
import numpy as np

from . import frame as frame_section
from .footage import FRAME_SIZES, VARIANTS, at_frame_size, frames, keep_rate, make_variant
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
    return footage_rows(variants, limit=30 if args.quick else 0)


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
            "after_left": keep.after_left if clip in LEFT_AT else "", "ok": keep.rate >= 0.99,
            "miss": f"keep rate {keep.rate:.3f} is {0.99 - keep.rate:.3f} under the 0.99 goal "
                    f"({keep.reference - keep.both} face frames lost)" if keep.rate < 0.99 else ""}


TAIWAN = SHARED / "data" / "extra" / "taiwan"


def photo_sets(taiwan_step: int = 8) -> dict[str, list[np.ndarray]]:
    """The real photos (group photos, portraits, one-face photos), every `taiwan_step`-th head-and-shoulders photo
    of data/extra/taiwan, and harder sets made from them: half size, tilted 20 and 25 degrees, dark and noisy; the
    one-face photos tilted 25 degrees, small in a 640x480 frame and shrunk to 120 px."""
    photos = [cv2.imread(str(p)) for p in sorted(PHOTOS.rglob("*.jpg"))]
    taiwan = [cv2.imread(str(p)) for p in sorted(TAIWAN.glob("*/*.jpg"))[::taiwan_step]]
    ones = [img for img in photos if len(_truth_detector().detect(img)) == 1]
    both = photos + taiwan[::4]
    return {"photos": photos, "taiwan": taiwan, **{name: [make_variant(i, v) for i in both] for name, v in
                                                   (("half size", "half"), ("tilted+20", "rotate+20"),
                                                    ("tilted-25", "rotate-25"), ("dark", "dark"))},
            "tilted+25": [make_variant(i, "rotate+25") for i in ones],
            "small in 640x480": [_small(i) for i in ones], "shrunk to 120 px": [_shrink(i, 120) for i in ones]}


def true_faces(image: np.ndarray) -> np.ndarray:
    """What is a face: YuNet's finds (score > 0.8) at full resolution, on a copy enlarged to 640 px when smaller."""
    f = max(1.0, 640 / max(image.shape[:2]))
    big = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR) if f > 1 else image
    return np.array([face.box / f for face in _truth_detector().detect(big)], np.float32).reshape(-1, 4)


@functools.lru_cache(maxsize=1)
def _truth_detector():
    from ..vision.faces import make_detector

    return make_detector("yunet", frame_section.YUNET, detection_size=0, score_threshold=0.8)


def pre_issue_12(image: np.ndarray) -> list:
    """The built-in detector's still-photo scan before issue 12 (the reference a still scan must not fall below):
    the frontal cascade on the copy shrunk to 320 px (never enlarged), scale step 1.15, 3 neighbours."""
    from ..vision.faces import Face, HaarDetector, _downscale, _grey

    small, scale = _downscale(image, 320)
    rects, _ = HaarDetector(eyes=False).face_cascade.detectMultiScale2(_grey(small), 1.15, 3)
    return [Face(np.asarray(r, np.float32) * scale, 1.0, stage="frontal") for r in rects]


def tally(detect, images: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    """Faces found (a box with IoU > 0.3 to a true face), missed, boxes matching no true face (IoU <= 0.1), and
    the finds per stage."""
    from ..vision.faces import iou

    found = missed = unmatched = 0
    stages: dict[str, int] = {}
    for img, want in zip(images, truths, strict=True):
        faces = detect(img)
        got = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        overlap = iou(want, got) if len(got) and len(want) else np.zeros((len(want), len(got)))
        hit = overlap.max(1) > 0.3 if len(got) else np.zeros(len(want), bool)
        found += int(hit.sum())
        missed += int((~hit).sum())
        unmatched += int((overlap.max(0) <= 0.1).sum()) if len(want) else len(got)
        for f in faces:
            stages[f.stage] = stages.get(f.stage, 0) + 1
    return {"faces": found + missed, "found": found, "missed": missed, "unmatched": unmatched,
            "stages": " ".join(f"{k}:{v}" for k, v in sorted(stages.items()))}


def photo_rows() -> list[dict]:
    from ..vision.faces import make_detector

    haar = make_detector("haar")
    detectors = {"haar before issue 12": pre_issue_12, "haar": haar.detect,
                 "haar still": lambda img: haar.detect(img, still=True),
                 "yunet": make_detector("yunet", frame_section.YUNET).detect}
    rows = []
    for name, images in photo_sets().items():
        truths = [true_faces(img) for img in images]
        for label, detect in detectors.items():
            rows.append({"section": "detect", "case": f"{label} on {name}", "images": len(images),
                         **tally(detect, images, truths)})
    if NO_FACE.is_file():
        clip = [frame for _, frame in frames(NO_FACE)]
        for label, detect in detectors.items():
            rows.append({"section": "detect", "case": f"{label} on pyfeat_no_face.mp4", "images": len(clip),
                         "faces": 0, "found": 0, "missed": 0, "unmatched": sum(len(detect(f)) for f in clip)})
    return rows


def scenes() -> list[np.ndarray]:
    """640x360 pictures: the group photos and multi_face.jpg letterboxed, and every 6th frame of
    pyfeat_single_face.mp4."""
    photos = [PHOTOS / "multi_face.jpg", *sorted((PHOTOS / "group").glob("*.jpg"))]
    clip = CLIPS["single_face"]
    pictures = [frame_section.letterbox(cv2.imread(str(p)), (640, 360)) for p in photos if p.is_file()]
    if clip.is_file():
        pictures += [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
                     for i, (_, f) in enumerate(frames(clip)) if i % 6 == 0]
    return pictures


def same_faces(detect, pictures: list[np.ndarray], size: str) -> dict:
    """Faces found in `pictures` at 640x360 and as frame `size`; how many of the first are found again (IoU >
    0.5 once mapped back), and the median detection ms at that size."""
    import time

    from ..vision.faces import iou

    base = again = found = 0
    ms = []
    for pic in pictures:
        want = np.array([f.box for f in detect(pic)], np.float32).reshape(-1, 4)
        frame, f, top = at_frame_size(pic, size)
        t0 = time.perf_counter()
        faces = detect(frame)
        ms.append((time.perf_counter() - t0) * 1e3)
        got = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        got[:, 1] -= top
        got *= f
        base += len(want)
        found += len(got)
        if len(want) and len(got):
            again += int((iou(want, got).max(1) > 0.5).sum())
    return {"at_640x360": base, "found": found, "found_again": again, "detect_ms": float(np.median(ms))}


def frame_size_rows() -> list[dict]:
    from ..vision.faces import make_detector

    pictures = scenes()
    rows = []
    for name, detector in (("haar", make_detector("haar")), ("yunet", make_detector("yunet", frame_section.YUNET))):
        for size in FRAME_SIZES:
            row = same_faces(detector.detect, pictures, size)
            lost = row["at_640x360"] - row["found_again"]
            rows.append({"section": "detect", "case": f"{name} at {size}", "images": len(pictures), **row,
                         "ok": lost <= 0, "miss": f"{lost} of the {row['at_640x360']} faces found at 640x360 not "
                                                  "found again" if lost > 0 else ""})
    return rows


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    s = side / max(image.shape[:2])
    return cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)), interpolation=cv2.INTER_AREA)


def _small(image: np.ndarray) -> np.ndarray:
    canvas = np.full((480, 640, 3), 110, np.uint8)
    small = _shrink(image, 200)
    canvas[50:50 + small.shape[0], 300:300 + small.shape[1]] = small
    return canvas
