"""Bench section `replay`: frames per second of `fer-ros replay` beside the pipeline alone.

The 640x360 clip ../shared/samples/video/pyfeat_single_face.mp4 (72 frames, one face), played
LOOPS times (so one-off costs, such as rosbags compiling its serializers, weigh as little as in a
real recording), is made into bags in a temp dir (sqlite3 and MCAP, raw bgr8 and JPEG) and
replayed with an output bag.
Goal: replay is not slower than the pipeline alone; reading, decoding and writing the bags take
<= 10% of the time (`io_share`: their total over the wall time; `io_share_of_medians`: the same
from per-frame medians, which stays meaningful on a machine busy with other jobs). Uses the
shipped model.
"""

import statistics
import tempfile
import time
from pathlib import Path

from .frame import SHARED  # the same clip folder as the frame section

CLIP = SHARED / "samples" / "video" / "pyfeat_single_face.mp4"
GOAL_IO_SHARE = 0.10
LOOPS = 3
#: (storage, distro, compressed)
CASES = (("sqlite3", "humble", False), ("mcap", "jazzy", False), ("mcap", "jazzy", True))


def looped_clip(loops: int) -> list[tuple[float, object]]:
    """(time s, BGR frame) of CLIP played `loops` times in a row, the times running on."""
    from ..vision.video import Video

    clip = list(Video(CLIP).frames())
    period = clip[-1][0] + (clip[-1][0] - clip[0][0]) / (len(clip) - 1)
    return [(t + loop * period, bgr) for loop in range(loops) for t, bgr in clip]


def run(args) -> list[dict]:
    from ..bags.bagtools import write_image_bag
    from ..bags.replay import replay
    from ..config import load_config
    from ..pipeline import Pipeline

    if not CLIP.is_file():
        return [{"section": "replay", "case": "skipped", "note": f"{CLIP} is absent"}]
    passes = 1 if args.quick else 3
    frames = looped_clip(LOOPS)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        pipeline = Pipeline(load_config())
        fps = []
        for t, bgr in frames[:10]:  # warm up: first inference runs and allocations
            pipeline.process(bgr, t)
        for _ in range(passes):
            pipeline.reset()
            t0 = time.perf_counter()
            for t, bgr in frames:
                pipeline.process(bgr, t)
            fps.append(len(frames) / (time.perf_counter() - t0))
        alone = statistics.median(fps)
        rows.append({"section": "replay", "case": "pipeline alone, frames in memory", "frames": len(frames),
                     "fps": alone})
        for storage, distro, compressed in CASES:
            name = f"{storage} {'jpeg' if compressed else 'bgr8'}"
            bag = d / name.replace(" ", "_")
            write_image_bag(bag, frames, storage=storage, distro=distro, compressed=compressed, start_time=0.0)
            reports = [replay(bag, out=d / f"{bag.name}_out{i}", pipeline=pipeline, progress=False).report
                       for i in range(passes)]
            r = sorted(reports, key=lambda r: r["throughput"]["fps"])[len(reports) // 2]
            share = r["throughput"]["io_share"]
            io_ms = {f"{s}_ms": r["latency_ms"][s]["median"] for s in ("read", "decode", "write")}
            typical = sum(io_ms.values()) / (sum(io_ms.values()) + r["latency_ms"]["total"]["median"])
            rows.append({"section": "replay", "case": f"replay {name} -> output bag",
                         "frames": r["frames"]["processed"], "fps": r["throughput"]["fps"],
                         "vs_pipeline": r["throughput"]["fps"] / alone, "io_share": share,
                         "io_share_of_medians": typical, **io_ms, "pipeline_ms": r["latency_ms"]["total"]["median"],
                         "goal": f"io_share <= {GOAL_IO_SHARE}", "ok": share <= GOAL_IO_SHARE})
    return rows
