"""Bench section `stills`: faces found in still photos, and the same scenes at every frame size.

- Per photo set of `fer_ros.bench.detect.photo_sets` (truth: YuNet), for the built-in detector's scan before
  issue 12, plain Haar, Haar's still-photo scan and YuNet: faces found, missed, boxes matching no face, and
  which stage found them.
- Per frame size of `fer_ros.bench.footage.FRAME_SIZES` (640x360, 720p, 1080p, 4K, a 720x1280 portrait
  frame), for Haar and YuNet: of the faces found in the 640x360 pictures of `detect.scenes`, how many are
  found again, and the median detection time.
"""

from . import frame as frame_section
from .detect import PHOTOS, frame_size_rows, photo_rows


def run(args) -> list[dict]:
    if not frame_section.YUNET.is_file() or not PHOTOS.is_dir():
        return [{"section": "stills", "case": "all", "note": f"skipped: needs {frame_section.YUNET} and {PHOTOS} "
                 "(../shared is beside source checkouts only); give YuNet with --detector-model"}]
    return [{**row, "section": "stills"} for row in photo_rows() + frame_size_rows()]
