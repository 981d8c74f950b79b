"""`fer-ros bag`: rosbag2 tools for people without ROS.

from-video / from-images write a camera bag (sensor_msgs/Image or CompressedImage, optional
CameraInfo) that `ros2 bag play` and `fer-ros replay` read; info shows what a bag holds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..cli import EXIT_OK, EXIT_SKIPPED, check_output, number
from ..errors import DataError, FerRosWarning, ImageError, read_yaml
from ..ros import messages
from ..vision.encodings import IMAGE_SUFFIXES, decode_compressed, image_to_bgr, read_image
from ..vision.video import Video, scaled
from . import bagio

ENCODINGS = ("bgr8", "rgb8", "mono8")


def image_message(store, bgr: np.ndarray, ns: int, frame_id: str, encoding: str = "bgr8"):
    """A sensor_msgs/Image of a BGR frame in `encoding` (bgr8, rgb8 or mono8)."""
    conversion = {"bgr8": None, "rgb8": cv2.COLOR_BGR2RGB, "mono8": cv2.COLOR_BGR2GRAY}[encoding]
    img = np.ascontiguousarray(bgr if conversion is None else cv2.cvtColor(bgr, conversion))
    h, w = img.shape[:2]
    return store.types[bagio.IMAGE](header=messages.header(store.types, ns, frame_id), height=h, width=w,
                                    encoding=encoding, is_bigendian=0, step=img.strides[0], data=img.reshape(-1))


def compressed_message(store, bgr: np.ndarray, ns: int, frame_id: str, encoding: str = "bgr8", quality: int = 90):
    """A sensor_msgs/CompressedImage (JPEG) of a BGR frame, format as image_transport writes it."""
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if encoding == "mono8" else bgr
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError("JPEG encoding failed")
    return store.types[bagio.COMPRESSED_IMAGE](header=messages.header(store.types, ns, frame_id),
                                               format=f"{encoding}; jpeg compressed {encoding}", data=buf.reshape(-1))


def camera_info_message(store, ns: int, frame_id: str, width: int, height: int, calibration: dict | None = None):
    """A sensor_msgs/CameraInfo from a camera_calibration_parsers YAML dict, or uncalibrated (K = 0)."""
    c = calibration or {}
    if c and (c.get("image_width"), c.get("image_height")) != (width, height):
        raise DataError(f"the calibration is for {c.get('image_width')}x{c.get('image_height')} images "
                        f"but the frames are {width}x{height}")

    def matrix(key: str, default: list[float]) -> np.ndarray:
        return np.asarray(c.get(key, {}).get("data", default), dtype=np.float64)

    roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types[bagio.CAMERA_INFO](
        header=messages.header(store.types, ns, frame_id), height=height, width=width,
        distortion_model=c.get("distortion_model", ""), d=matrix("distortion_coefficients", []),
        k=matrix("camera_matrix", [0.0] * 9), r=matrix("rectification_matrix", [1, 0, 0, 0, 1, 0, 0, 0, 1]),
        p=matrix("projection_matrix", [0.0] * 12), binning_x=0, binning_y=0, roi=roi)


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic beside an image topic, as image_transport names it."""
    base = image_topic.removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


def write_image_bag(out: str | Path, frames: Iterable[tuple[float, np.ndarray]], *, topic: str | None = None,
                    encoding: str = "bgr8", compressed: bool = False, quality: int = 90, storage: str | None = None,
                    distro: str = "humble", frame_id: str = "camera", camera_info: dict | bool | None = None,
                    start_time: float = 0.0) -> int:
    """Write (seconds, BGR frame) pairs as a camera bag; stamps are start_time + seconds. Returns the count.

    camera_info: True for an uncalibrated CameraInfo beside the images, a calibration dict for a calibrated one.
    """
    if encoding not in ENCODINGS:
        raise DataError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    topic = topic or ("/camera/image_raw/compressed" if compressed else "/camera/image_raw")
    n = 0
    with bagio.BagWriter(out, storage or bagio.DEFAULT_STORAGE[distro], distro) as bag:
        bag.add_topic(topic, bagio.COMPRESSED_IMAGE if compressed else bagio.IMAGE)
        if camera_info:
            bag.add_topic(camera_info_topic(topic), bagio.CAMERA_INFO)
        for t, bgr in frames:
            ns = round((start_time + t) * 1e9)
            msg = (compressed_message(bag.store, bgr, ns, frame_id, encoding, quality) if compressed
                   else image_message(bag.store, bgr, ns, frame_id, encoding))
            decode_check(msg, compressed, bgr.shape[:2], n)
            bag.write(topic, ns, msg)
            if camera_info:
                calibration = camera_info if isinstance(camera_info, dict) else None
                bag.write(camera_info_topic(topic), ns, camera_info_message(
                    bag.store, ns, frame_id, bgr.shape[1], bgr.shape[0], calibration))
            n += 1
    return n


def decode_check(msg, compressed: bool, shape: tuple[int, int], index: int) -> None:
    """Decode a message about to be written, as `fer-ros replay` and the node will; DataError if it does not
    give back the frame's size, so a bag never holds a frame its readers reject."""
    try:
        img = (decode_compressed(msg.data) if compressed else
               image_to_bgr(msg.data, msg.encoding, int(msg.width), int(msg.height), int(msg.step)))
    except ImageError as e:
        raise DataError(f"frame {index}: the message written for it does not decode ({e}); nothing more "
                        "written") from None
    if img.shape[:2] != tuple(shape):
        raise DataError(f"frame {index}: the message written for it decodes to {img.shape[1]}x{img.shape[0]}, not "
                        f"{shape[1]}x{shape[0]}; nothing more written")


def image_frames(folder: str | Path, fps: float, scale: float = 1.0,
                 skipped: list[str] | None = None) -> tuple[Iterator[tuple[float, np.ndarray]], int]:
    """(index / fps, BGR) of the images in a folder, by file name. Each is decoded as strictly as `fer-ros infer`
    reads it (`encodings.read_image`: a truncated JPEG is unreadable); one that is not is skipped with a
    FerRosWarning and its reason appended to `skipped`."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if Path(folder).is_dir() else []
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")

    def frames():
        n = 0
        for p in files:
            try:
                img = read_image(p)
            except ImageError as e:
                warnings.warn(f"{e}: not a readable image, skipped", FerRosWarning, stacklevel=2)
                if skipped is not None:
                    skipped.append(str(e))
                continue
            yield n / fps, scaled(img, scale)
            n += 1
    return frames(), len(files)


def bag_info(path: str | Path) -> dict:
    """What a bag holds: storage, layout, duration, topics with types and counts, and repair notes."""
    with bagio.BagReader(path) as bag:
        return {
            "path": str(path), "storage": bag.storage, "version": bag.version, "layout": bag.layout,
            "definitions": any(t.definition for t in bag.topics.values()),
            "start_s": bag.start_ns / 1e9 if bag.start_ns is not None else None,
            "duration_s": bag.duration_ns / 1e9, "messages": bag.message_count,
            "topics": [{"name": t.name, "type": t.msgtype, "count": t.count, "definition": t.definition}
                       for t in bag.topics.values()],
            "notes": bag.notes,
        }


def print_info(info: dict) -> None:
    def unknown(v):
        return "?" if v is None else v

    defs = "message definitions stored" if info["definitions"] else "no message definitions"
    version = f"metadata version {info['version']}" if info["version"] is not None else "no metadata.yaml"
    start = ("?" if info["start_s"] is None
             else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["start_s"])))
    print(f"bag:       {info['path']}\nstorage:   {info['storage']}\n"
          f"layout:    {info['layout']} ({version}, {defs})\nstart:     {start}\n"
          f"duration:  {info['duration_s']:.3f} s\nmessages:  {unknown(info['messages'])}\n")
    rows = [("topic", "type", "count")] + [(t["name"], t["type"], unknown(t["count"])) for t in info["topics"]]
    widths = [max(len(str(r[i])) for r in rows) for i in range(2)]
    for name, msgtype, count in rows:
        print(f"{name:<{widths[0]}}  {msgtype:<{widths[1]}}  {count:>7}")
    for note in info["notes"]:
        print(f"note: {note}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bag_command", metavar="TOOL", required=True)
    writer = argparse.ArgumentParser(add_help=False)
    w = writer.add_argument_group("bag to write")
    w.add_argument("--topic", help="image topic (default: /camera/image_raw, or /camera/image_raw/compressed)")
    w.add_argument("--encoding", choices=ENCODINGS, default="bgr8", help="pixel encoding (default: %(default)s)")
    w.add_argument("--compressed", action="store_true", help="write sensor_msgs/CompressedImage (JPEG) instead")
    w.add_argument("--quality", type=number(int, 1, 100), default=90, metavar="1..100",
                   help="JPEG quality with --compressed (default: %(default)s)")
    w.add_argument("--distro", choices=bagio.DISTROS, default="humble",
                   help="bag layout: humble (metadata v5, no definitions in sqlite3) or jazzy (v9, with "
                        "definitions) (default: %(default)s)")
    w.add_argument("--storage", choices=bagio.STORAGES,
                   help="storage plugin (default: the distro's default, humble: sqlite3, jazzy: mcap)")
    w.add_argument("--frame-id", default="camera", metavar="FRAME", help="header.frame_id (default: %(default)s)")
    w.add_argument("--camera-info", nargs="?", const=True, metavar="CALIBRATION_YAML",
                   help="also write sensor_msgs/CameraInfo beside the images: from a camera_calibration_parsers "
                        "YAML file, or uncalibrated (K = 0) when no file is given")
    w.add_argument("--start-time", type=number(float, 0), metavar="SECONDS",
                   help="header.stamp of the first frame, seconds since the epoch (default: now)")
    w.add_argument("--scale", type=number(float, above=0), default=1.0, metavar="FACTOR",
                   help="resize frames by this factor (default: %(default)s)")

    v = sub.add_parser("from-video", parents=[writer], help="write a camera bag from a video file",
                       description="Write a camera bag from a video; header.stamp follows the video's timestamps.")
    v.add_argument("video", help="video file (anything OpenCV reads: mp4, mov, avi, ...)")
    v.add_argument("out", help="bag directory to create")
    v.add_argument("--step", type=number(int, 1), default=1, metavar="N",
                   help="keep every N-th frame (default: %(default)s)")
    v.add_argument("--max-frames", type=number(int, 1), metavar="N", help="stop after this many frames")

    i = sub.add_parser("from-images", parents=[writer], help="write a camera bag from a folder of images",
                       description="Write a camera bag from a folder of images, in file-name order.")
    i.add_argument("folder", help="folder of images (jpg, png, bmp, tif, webp)")
    i.add_argument("out", help="bag directory to create")
    i.add_argument("--fps", type=number(float, above=0), default=10.0, metavar="HZ",
                   help="frame rate of the stamps (default: %(default)s)")

    info = sub.add_parser("info", help="show a bag's storage, layout, topics, types and counts",
                          description="Show a bag's storage, layout, topics, types, counts and duration.")
    info.add_argument("bag", help="bag directory, or its .db3/.mcap file")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    if args.bag_command == "info":
        info = bag_info(args.bag)
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print_info(info)
        return 0
    source = getattr(args, "video", None) or args.folder
    calibration = args.camera_info
    bagio.require_rosbags()  # before the progress bar, not after it
    check_output(args.out, "out", "bag", inputs=[source, calibration if isinstance(calibration, str) else None])
    if isinstance(calibration, str):
        calibration = read_yaml(calibration, "calibration", DataError)
        if not isinstance(calibration, dict):
            raise DataError(f"{args.camera_info}: not a camera calibration (a camera_calibration_parsers YAML "
                            "mapping with image_width, image_height, camera_matrix, ...)")
    video, skipped = None, []
    if args.bag_command == "from-video":
        video = Video(args.video)
        frames, total = video.frames(args.step, args.max_frames, args.scale), video.count(args.step, args.max_frames)
    else:
        frames, total = image_frames(args.folder, args.fps, args.scale, skipped)
    try:
        n = write_image_bag(args.out, tqdm(frames, total=total or None, unit="frame", desc="writing",
                                           file=sys.stderr),
                            topic=args.topic, encoding=args.encoding, compressed=args.compressed,
                            quality=args.quality, storage=args.storage, distro=args.distro, frame_id=args.frame_id,
                            camera_info=calibration,
                            start_time=time.time() if args.start_time is None else args.start_time)
    except BaseException as err:  # a bad calibration, a frame that does not decode, Ctrl-C: no half-written bag
        shutil.rmtree(args.out, ignore_errors=True)
        if isinstance(err, DataError):
            raise DataError(f"{source}: {err}") from None
        raise
    if not n:
        shutil.rmtree(args.out)
        raise DataError(f"{source}: no frames were read")
    notes = [f"{len(skipped)} unreadable image(s) skipped"] if skipped else []
    if video is not None and video.truncated:
        notes.append(f"the video ended early, after {video.read} of the {video.total} frames it declares")
    print(f"wrote {n} frames" + "".join(f"; {note}" for note in notes))
    print_info(bag_info(args.out))
    if notes:
        print(f"fer-ros bag {args.bag_command}: wrote {n} frames; " + "; ".join(notes), file=sys.stderr)
    return EXIT_SKIPPED if notes else EXIT_OK
