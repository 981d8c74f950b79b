"""`fer-ros infer SOURCE`: run the face pipeline on an image, a folder of images, a video or a camera.

Prints one JSON line per frame on stdout, then one {"summary": ...} line (progress, warnings and a one-line
summary go to stderr); --save writes annotated output. Still images are independent: tracks are reset for each
and a face is reported on first sight. Exit status 1 when images could not be read or a video ended before the
frame count its container declares.
"""

import json
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .cli import atomic_output, check_output, number
from .config import add_arguments as config_arguments
from .config import load_config, overrides_from
from .errors import FerRosWarning, ImageError
from .vision.encodings import IMAGE_SUFFIXES, encode_image, opencv_path, read_image
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
    failed = processed = 0
    with ExitStack() as stack:
        writer = _Writer(args.save, source, stack) if args.save else None
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
    return _summary(args.source, source, processed, failed)


def _summary(name: str, source: "_Source", processed: int, failed: int) -> int:
    """The summary, as the last JSON line and one line on stderr; the exit status (1: something was skipped)."""
    video = source.video
    summary = {"source": name, "kind": source.kind, "processed": processed, "failed": failed,
               "videos_skipped": source.skipped_videos}
    if video is not None:
        summary.update(frames_read=video.read, frames_declared=video.total or None, truncated=video.truncated)
    print(json.dumps({"summary": summary}), flush=True)
    unit = "image(s)" if source.still else "frame(s)"
    if not processed:
        raise ImageError(f"{name}: nothing processed: " + (f"none of the {failed} images could be read (see above)"
                                                           if failed else "no frame could be read"))
    notes = [f"{failed} image(s) could not be read (see above)"] if failed else []
    if source.skipped_videos:
        notes.append(f"{source.skipped_videos} video(s) in the folder were not read (see above)")
    if video is not None and video.truncated:
        notes.append(f"the video ended early, after {video.read} of the {video.total} frames it declares")
    print(f"fer-ros infer: {processed} {unit} processed" + "".join(f"; {n}" for n in notes), file=sys.stderr)
    return 1 if notes else 0


class _Source:
    """Frames from an image, a folder, a video or a camera: (name, index, stamp s, BGR or None)."""

    def __init__(self, kind: str, target, paths: list[Path] | None = None):
        self.kind, self.target, self.paths = kind, target, paths or []
        self.skipped_videos = 0  # videos in a folder source, not read
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
                    warnings.warn(FerRosWarning(f"skipped {e}"), stacklevel=1)
                    image = None
                yield str(path), 0, 0.0, image


#: what a folder source skips, with a word (video files are SOURCEs of their own)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")


def _open(source: str) -> _Source:
    if source.isdigit():
        return _Source("camera", int(source))
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        videos = sorted(p.name for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        also = (f"; it has {len(videos)} video(s) ({', '.join(videos[:3])}{', ...' if len(videos) > 3 else ''}), "
                "which a folder source does not read: give each video as SOURCE") if videos else ""
        if not paths:
            raise ImageError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder{also}")
        if videos:
            warnings.warn(FerRosWarning(f"{path}: reading the {len(paths)} image(s) only{also}"), stacklevel=1)
        source = _Source("folder", path, paths)
        source.skipped_videos = len(videos)
        return source
    if not path.exists():
        raise ImageError(f"{path}: no such file, folder or camera")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _Source("image", path, [path])
    return _Source("video", str(path))


class _Writer:
    """Annotated output: files for still images, an MP4 for a stream; each written through `cli.atomic_output`
    (a failure leaves no half-written file; Ctrl-C keeps the video of the frames so far)."""

    def __init__(self, path: str, source: _Source, stack: ExitStack):
        self.path, self.source, self.stack, self.video = Path(path), source, stack, None
        if source.kind == "folder":
            self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, image: np.ndarray) -> None:
        if self.source.kind in ("image", "folder"):
            target = self.path / Path(name).name if self.source.kind == "folder" else self.path
            data = encode_image(image, target.suffix)  # bytes, written by Python: any file name works
            with atomic_output(target) as tmp:
                tmp.write_bytes(data)
            return
        if self.video is None:
            tmp = self.stack.enter_context(atomic_output(self.path, keep_on_interrupt=True))
            self.video = cv2.VideoWriter(opencv_path(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.source.fps,
                                         (image.shape[1], image.shape[0]))
            self.stack.callback(self.video.release)  # before the rename
            if not self.video.isOpened():
                raise ImageError(f"{self.path}: cannot write a video here (use an .mp4 path in a writable folder)")
        self.video.write(image)
