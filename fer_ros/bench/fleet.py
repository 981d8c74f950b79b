"""Bench section `fleet`: the same bags replayed by `fer-ros replay` on a local Dask cluster of 1, then 2 workers.

BAGS bags, each the 640x360 clip ../shared/samples/video/pyfeat_single_face.mp4 played LOOPS times (JPEG,
MCAP), are replayed with output bags and reports, as `fer-ros replay BAGS... --out DIR --workers N` does.
Per cluster size: its start-up time, the wall time of the replay (start-up excluded), frames/s, the speed-up
over 1 worker, and the engine's own cost per task (a round of empty tasks). Uses the shipped model.
"""

import importlib.util
import tempfile
import time
from pathlib import Path

from .replay import CLIP, looped_clip

BAGS = 6
LOOPS = 2
EMPTY_TASKS = 200


def _empty(i: int) -> int:
    return i


def run(args) -> list[dict]:
    if importlib.util.find_spec("distributed") is None:
        return [{"section": "fleet", "case": "skipped", "note": "Dask distributed is absent: pip install "
                 "'fer_ros[fleet]'"}]
    if not CLIP.is_file():
        return [{"section": "fleet", "case": "skipped", "note": f"{CLIP} is absent"}]
    from ..bags import fleet
    from ..bags.bagtools import write_image_bag

    n_bags = 4 if args.quick else BAGS
    frames = looped_clip(LOOPS)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        bags = [d / "in" / f"bag{i}" for i in range(n_bags)]
        for bag in bags:
            write_image_bag(bag, frames, storage="mcap", distro="jazzy", compressed=True, start_time=0.0)
        for workers in (1, 2):
            jobs = fleet.make_jobs(bags, d / f"out{workers}", {}, {})
            t0 = time.perf_counter()
            with fleet.engine(workers=workers) as client:
                client.wait_for_workers(workers)
                started = time.perf_counter()
                client.gather(client.map(_empty, range(EMPTY_TASKS), pure=False))
                t1 = time.perf_counter()
                results, _ = fleet.replay_fleet(client, jobs, progress=False)
                wall = time.perf_counter() - t1
            done = sum(r["frames"] for r in results)
            fps = done / wall
            rows.append({"section": "fleet", "case": f"{workers} worker{'s' if workers > 1 else ''}",
                         "bags": len(bags), "frames": done, "failed": sum(r["status"] != "ok" for r in results),
                         "startup_s": started - t0, "wall_s": wall, "fps": fps,
                         "speedup": fps / rows[0]["fps"] if rows else 1.0,
                         "task_ms": 1e3 * (t1 - started) / EMPTY_TASKS})
    return rows
