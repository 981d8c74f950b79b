"""`fer-ros bench`: run benchmark sections, print one table, write JSON.

Each section is a module in this package with ``run(args) -> list[dict]``; a row has
"section", "case" and measured fields (times in ms unless the key says otherwise).
"""

import importlib
import json
import platform
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from ..cli import atomic_output, check_output, missing_dependency, number
from ..errors import FerRosError

SECTIONS = ("train", "classifier", "frame", "detect", "stills", "replay", "fleet")


def add_arguments(p):
    p.add_argument("sections", nargs="*", choices=[*SECTIONS, []], metavar="SECTION",
                   help=f"which to run: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--json", default="bench.json", help="write the results here (default: %(default)s)")
    p.add_argument("--repeat", type=number(int, 1), default=50,
                   help="timed repetitions per case (default: %(default)s)")
    p.add_argument("--detector-model", metavar="ONNX",
                   help="YuNet model for the frame section (face_detection_yunet_2023mar.onnx; default: the copy in "
                        "../shared beside a source checkout; without one, YuNet is skipped)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and smaller data, for a smoke run")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}


def timeit(fn, repeat: int, warmup: int = 3) -> dict:
    """Median, p90 and min of `repeat` calls of fn(), in ms."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(np.min(t))}


def print_table(rows: list[dict]) -> None:
    """One aligned table per section, with that section's columns."""
    for section in dict.fromkeys(r["section"] for r in rows):
        _print_rows([{k: v for k, v in r.items() if k != "section"} for r in rows if r["section"] == section],
                    section)


#: the widest line a table may print; wider tables are split into parts that repeat the first column
WIDTH = 100


#: free-text fields, printed under the table (wrapped), not in a column
TEXT = ("note", "miss")


def _print_rows(rows: list[dict], title: str) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in TEXT))
    cells = [[_fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    parts, part = [], [0]
    for i in range(1, len(keys)):
        if sum(widths[j] + 2 for j in part) + widths[i] > WIDTH and len(part) > 1:
            parts.append(part)
            part = [0]
        part.append(i)
    parts.append(part)
    for n, part in enumerate(parts, 1):
        print(f"\n[{title}]" + (f" ({n}/{len(parts)})" if len(parts) > 1 else ""))
        print("  ".join(keys[i].ljust(widths[i]) for i in part).rstrip())
        for c in cells:
            print("  ".join(c[i].ljust(widths[i]) for i in part).rstrip())
    for r in rows:
        for k in TEXT:
            if r.get(k):
                print(textwrap.fill(f"{r.get('case', '')}: {k}: {r[k]}", WIDTH, subsequent_indent="    "))


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run(args) -> int:
    check_output(args.json, "--json", "json")
    model = getattr(args, "detector_model", None)
    if model is not None:
        if not Path(model).is_file():
            raise FerRosError(f"--detector-model {model}: no such file; give the YuNet ONNX file "
                              "(face_detection_yunet_2023mar.onnx from OpenCV's model zoo)")
        from . import frame

        frame.YUNET = Path(model)
    rows = []
    for name in args.sections or SECTIONS:
        try:
            rows += importlib.import_module(f"fer_ros.bench.{name}").run(args)
        except ModuleNotFoundError as err:  # all sections asked for: run those that can
            if args.sections or missing_dependency(err) is None:
                raise
            rows.append({"section": name, "case": "all", "note": f"skipped: {missing_dependency(err)}"})
    print_table(rows)
    with atomic_output(args.json) as tmp:
        tmp.write_text(json.dumps({"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows},
                                  indent=1))
    print(f"wrote {args.json}")
    return 0
