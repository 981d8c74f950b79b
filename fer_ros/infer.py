"""`fer-ros infer SOURCE`: run the face pipeline on an image, a folder of images, a video or a camera.

Prints one JSON line per frame on stdout, then one {"summary": ...} line (progress, warnings and a one-line
summary go to stderr); --save writes annotated output. Still images are independent: tracks are reset for each
and a face is reported on first sight. Exit status 1 when images could not be read or a video ended before the
frame count its container declares.
"""

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .cli import check_output, number
from .config import add_arguments as config_arguments
from .config import load_config, overrides_from
from .errors import ImageError
from .vision.encodings import IMAGE_SUFFIXES, read_image
from .vision.video import Video


def add_arguments(p) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="an image, a folder of images, a video file, or a camera index (0, 1, ...)")
    p.add_argument("--config", metavar="YAML", help="ROS 2 parameters file with pipeline parameters "
                                                    "(default: fer_ros/config/fer.yaml); options below override it")
    p.add_argument("--save", metavar="PATH", help="write annotated output: an image file (.jpg, .png, ...) for an "
                                                  "image, a folder for a folder, an .mp4 for a video or camera")
    p.add_argument("--max-frames", type=number(int, 1), metavar="N", help="stop after N frames or images")
    config_arguments(p)


def run(args) -> int:
    from .pipeline import Pipeline
    from .vision.annotate import annotate

    overrides = overrides_from(args)
    source = _open(args.source)
    check_output(args.save, "--save", {"image": "image", "folder": "folder"}.get(source.kind, "video"),
                 inputs=[*source.paths, source.target if source.kind != "camera" else None, args.config],
                 because=f"the input is {'an' if source.kind == 'image' else 'a'} {source.kind}")
    pipeline = Pipeline(load_config(args.config, **overrides))
    writer = _Writer(args.save, source) if args.save else None
    failed = processed = 0
    try:
        for name, index, stamp, image in source.frames(args.max_frames):
            if image is None:
                failed += 1
                continue
            if not processed:  # said once, when there is something to detect in
                tqdm.write(f"fer-ros infer: {pipeline.detector_note}", file=sys.stderr)  # above the progress bar
            result = pipeline.process_image(image) if source.still else pipeline.process(image, stamp)
            processed += 1
            print(json.dumps({"source": name, "frame": index, **result.to_dict()}), flush=True)
            if writer:
                writer.write(name, annotate(image, result))
    finally:
        if writer:
            writer.close()
    return _summary(args.source, source, processed, failed)


def _summary(name: str, source: "_Source", processed: int, failed: int) -> int:
    """The summary, as the last JSON line and one line on stderr; the exit status (1: something was skipped)."""
    video = source.video
    summary = {"source": name, "kind": source.kind, "processed": processed, "failed": failed}
    if video is not None:
        summary.update(frames_read=video.read, frames_declared=video.total or None, truncated=video.truncated)
    print(json.dumps({"summary": summary}), flush=True)
    unit = "image(s)" if source.still else "frame(s)"
    if not processed:
        raise ImageError(f"{name}: nothing processed: " + (f"none of the {failed} images could be read (see above)"
                                                           if failed else "no frame could be read"))
    notes = [f"{failed} image(s) could not be read (see above)"] if failed else []
    if video is not None and video.truncated:
        notes.append(f"the video ended early, after {video.read} of the {video.total} frames it declares")
    print(f"fer-ros infer: {processed} {unit} processed" + "".join(f"; {n}" for n in notes), file=sys.stderr)
    return 1 if notes else 0


class _Source:
    """Frames from an image, a folder, a video or a camera: (name, index, stamp s, BGR or None)."""

    def __init__(self, kind: str, target, paths: list[Path] | None = None):
        self.kind, self.target, self.paths = kind, target, paths or []
        self.still = kind in ("image", "folder")
        self.fps = 30.0
        self.video = self.cap = None
        if kind == "video":
            self.video = Video(target)
            self.fps = self.video.fps
        elif kind == "camera":
            self.cap = cv2.VideoCapture(target)
            if not self.cap.isOpened():
                raise ImageError(f"cannot open camera {target}")

    def frames(self, limit: int | None) -> Iterator[tuple[str, int, float, np.ndarray | None]]:
        if self.video is not None:
            for index, (stamp, image) in enumerate(tqdm(self.video.frames(max_frames=limit), desc="frames",
                                                        unit="frame", total=self.video.count(max_frames=limit) or None,
                                                        file=sys.stderr)):
                yield str(self.target), index, stamp, image
        elif self.cap is not None:
            index = 0
            while limit is None or index < limit:
                ok, image = self.cap.read()
                if not ok:
                    break
                yield f"camera:{self.target}", index, time.time(), image
                index += 1
            self.cap.release()
        else:
            paths = self.paths[:limit] if limit is not None else self.paths
            for path in tqdm(paths, desc="images", unit="img", disable=len(paths) < 2, file=sys.stderr):
                try:
                    image = read_image(path)
                except ImageError as e:
                    if self.kind == "image":
                        raise
                    tqdm.write(f"fer-ros infer: skipped {e}", file=sys.stderr)
                    image = None
                yield str(path), 0, 0.0, image


def _open(source: str) -> _Source:
    if source.isdigit():
        return _Source("camera", int(source))
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ImageError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return _Source("folder", path, paths)
    if not path.exists():
        raise ImageError(f"{path}: no such file, folder or camera")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _Source("image", path, [path])
    return _Source("video", str(path))


class _Writer:
    """Annotated output: files for still images, an MP4 for a stream."""

    def __init__(self, path: str, source: _Source):
        self.path, self.source, self.video = Path(path), source, None
        if source.kind == "folder":
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, image: np.ndarray) -> None:
        if self.source.kind in ("image", "folder"):
            target = self.path / Path(name).name if self.source.kind == "folder" else self.path
            if not cv2.imwrite(str(target), image):
                raise ImageError(f"{target}: could not write the annotated image (check the folder and suffix)")
            return
        if self.video is None:
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.source.fps,
                                         (image.shape[1], image.shape[0]))
            if not self.video.isOpened():
                raise ImageError(f"{self.path}: cannot write a video here (use an .mp4 path in a writable folder)")
        self.video.write(image)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
