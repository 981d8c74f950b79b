"""The fleet report of a many-bag replay: a row per bag and totals, as fleet.json, fleet.csv and fleet.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..metrics import report_from_confusion

#: statuses of a bag whose outputs are complete: every frame processed, or some skipped / the bag cut short
COMPLETE = ("ok", "partial")
#: the columns of fleet.csv, in order (fleet.json's rows also carry the expression confusion matrix)
COLUMNS = ("bag", "status", "read", "frames", "with_face", "faces", "skipped", "fps", "realtime", "labelled",
           "accuracy", "macro_f1", "detector", "attempts", "reused", "wall_s", "stopped", "error", "path", "folder")
#: totals summed over the rows
SUMMED = ("read", "frames", "with_face", "faces", "skipped", "labelled")


def bag_row(report: dict, folder: str | Path, detector: str, attempts: int, wall_s: float) -> dict:
    """The fleet row of one bag's replay report (docs/replay.md, report.json)."""
    fr, tp = report["frames"], report["throughput"]
    expression = report.get("labels", {}).get("expression_smoothed", {})
    labelled = expression.get("n", 0)
    if report["stopped"] == "interrupted (Ctrl-C)":
        status = "not run"
    elif not fr["processed"]:
        status = "failed"
    else:
        status = "partial" if fr["errors"] or report["stopped"] else "ok"
    error = None if status != "failed" else (report["errors"][0]["error"] if report["errors"] else
                                             report["stopped"] or "the image topic has no messages")
    return {"bag": Path(folder).name, "status": status, "read": fr["read"], "frames": fr["processed"],
            "with_face": fr["with_face"],
            "faces": sum(int(k) * v for k, v in report["faces_per_frame"]["histogram"].items()),
            "skipped": fr["errors"], "fps": tp["fps"], "realtime": tp["realtime_factor"], "labelled": labelled,
            "accuracy": expression["accuracy"] if labelled else None,
            "macro_f1": expression["macro_f1"] if labelled else None, "detector": detector,
            "attempts": attempts, "reused": False, "wall_s": wall_s, "stopped": report["stopped"], "error": error,
            "path": report["bag"], "folder": str(folder),
            "confusion": expression.get("confusion") if labelled else None,
            "confusion_classes": expression.get("classes") if labelled else None}


def failed_row(bag: str | Path, folder: str | Path, error: str, attempts: int = 1, status: str = "failed") -> dict:
    row = dict.fromkeys(COLUMNS)
    return {**row, **dict.fromkeys(SUMMED, 0), "bag": Path(folder).name, "status": status, "attempts": attempts,
            "reused": False, "error": error, "path": str(bag), "folder": str(folder), "confusion": None,
            "confusion_classes": None}


def summary(rows: list[dict], wall_s: float, interrupted: bool = False) -> dict:
    """Rows and totals: bags per status, summed counts, fleet frames/s, and accuracy and macro-F1 pooled over
    every labelled frame (from the summed confusion matrices)."""
    totals = {"bags": len(rows), **{s: sum(r["status"] == s for r in rows) for s in ("ok", "partial", "failed",
                                                                                     "not run")},
              "done": sum(r["status"] in COMPLETE for r in rows), "reused": sum(bool(r["reused"]) for r in rows),
              **{k: sum(r[k] for r in rows) for k in SUMMED}, "wall_s": wall_s,
              "replayed": sum(r["frames"] for r in rows if not r["reused"])}
    totals["fps"] = totals["replayed"] / wall_s if wall_s else 0.0
    labelled = [r for r in rows if r["confusion"]]
    totals["accuracy"] = totals["macro_f1"] = None
    if labelled:
        pooled = report_from_confusion(sum(np.asarray(r["confusion"]) for r in labelled),
                                       tuple(labelled[0]["confusion_classes"]))
        totals["accuracy"], totals["macro_f1"] = pooled["accuracy"], pooled["macro_f1"]
    return {"rows": rows, "totals": totals, "interrupted": interrupted, "outputs": {}}


def write(fleet: dict, folder: str | Path) -> dict:
    """fleet.json, fleet.csv (a row per bag, then the totals) and fleet.png into `folder`; returns their paths."""
    folder = Path(folder)
    paths = {k: str(folder / f"fleet.{k}") for k in ("json", "csv", "png")}
    fleet["outputs"] = paths
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(fleet["rows"])
        writer.writerow({**fleet["totals"], "bag": "total", "status": f"{fleet['totals']['done']} done",
                         "reused": fleet["totals"]["reused"]})
    plot(fleet, paths["png"])
    with open(paths["json"], "w") as f:
        json.dump(fleet, f, indent=1)
    return paths


def plot(fleet: dict, path: str | Path) -> None:
    """Accuracy and speed per bag, side by side, one bar per bag, coloured by status."""
    from ..plots import pyplot

    plt = pyplot()
    rows, totals = fleet["rows"], fleet["totals"]
    colors = {"ok": "tab:blue", "partial": "tab:orange", "failed": "tab:red", "not run": "tab:gray"}
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.4 + 0.32 * len(rows)), sharey=True)
    for ax, key, title in ((axes[0], "accuracy", "expression accuracy (smoothed), labelled frames"),
                           (axes[1], "fps", "replay speed, frames/s")):
        values = [r[key] or 0.0 for r in rows]
        ax.barh(y, values, color=[colors[r["status"]] for r in rows])
        for i, r in enumerate(rows):
            text = (r["status"] if r["status"] in ("failed", "not run") else "no labels" if r[key] is None
                    else f"{r[key]:.2f}" if key == "accuracy" else f"{r[key]:.0f}")
            ax.text(values[i], i, f" {text}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    if totals["accuracy"] is not None:
        axes[0].axvline(totals["accuracy"], color="black", linestyle="--", linewidth=1,
                        label=f"all labelled frames: {totals['accuracy']:.2f}")
        axes[0].legend(loc="lower right", fontsize=8)
    axes[0].set_xlim(0, 1.2)
    axes[0].set_xticks(np.linspace(0, 1, 6))
    axes[1].set_xlim(0, 1.25 * max([r["fps"] or 0.0 for r in rows] + [1.0]))
    axes[0].set_yticks(y, [r["bag"] for r in rows])
    axes[0].invert_yaxis()
    fig.suptitle(f"{totals['bags']} bags: {totals['ok']} ok, {totals['partial']} partial, {totals['failed']} failed"
                 f"{', ' + str(totals['not run']) + ' not run' if totals['not run'] else ''}; "
                 f"{totals['frames']} frames; {totals['wall_s']:.0f} s in all")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_summary(fleet: dict) -> None:
    """The fleet as a table (a line per bag, under 100 columns), the totals and the files written."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    print(f"\n{'bag':<24}{'status':<9}{'frames':>7}{'w/face':>7}{'faces':>7}{'skip':>5}{'fps':>7}"
          f"{'acc':>6}{'F1':>6}  {'detector':<9}{'tries':>5}")
    for r in fleet["rows"]:
        status = "reused" if r["reused"] else r["status"]
        print(f"{r['bag'][:23]:<24}{status:<9}{r['frames']:>7}{r['with_face']:>7}{r['faces']:>7}{r['skipped']:>5}"
              f"{num(r['fps'], '.1f'):>7}{num(r['accuracy'], '.3f'):>6}{num(r['macro_f1'], '.3f'):>6}  "
              f"{r['detector'] or '-':<9}{r['attempts']:>5}")
    t = fleet["totals"]
    print(f"\n{t['bags']} bags: {t['ok']} ok, {t['partial']} partial (frames skipped or cut short), {t['failed']} "
          f"failed, {t['not run']} not run; {t['reused']} reused from an earlier run")
    print(f"{t['frames']} frames, {t['with_face']} with a face, {t['faces']} faces, {t['skipped']} skipped; "
          f"this run replayed {t['replayed']} in {t['wall_s']:.1f} s, {t['fps']:.1f} frames/s (the engine's start "
          "included)")
    if "engine" in fleet:
        print(f"engine: Dask distributed, {fleet['engine']['workers']} workers at {fleet['engine']['scheduler']}")
    if t["accuracy"] is not None:
        print(f"all {t['labelled']} labelled frames: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f} "
              "(smoothed)")
    for r in fleet["rows"]:
        if r["error"]:
            print(f"{r['bag']}: {r['error']}")
    for name, path in fleet["outputs"].items():
        print(f"{name}: {path}")
