"""Reproduce the paper's comparison: ARCH-1..4 trained on FER2013 with one recipe, one table.

    python training/compare_archs.py --epochs 10 --out runs/compare

Writes OUT/<arch>/ (checkpoints, curves) and OUT/compare.json + OUT/compare.md: parameters,
multiply-accumulates per face, PublicTest accuracy and macro-F1, epochs, wall time per epoch
and in total, on this machine.
A finished architecture is not trained again (delete its folder to redo it); an interrupted one
resumes from its last.pt.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.bench import machine  # noqa: E402
from fer_ros.learning.models import ARCHS, build_model, count_macs, count_params  # noqa: E402
from fer_ros.learning.train import TrainConfig, train  # noqa: E402


def timing(metrics: Path) -> dict:
    """Epochs run, median seconds per epoch (robust to epochs slowed by other work) and total minutes."""
    seconds = [json.loads(line)["epoch_time_s"] for line in metrics.read_text().splitlines()]
    return {"epochs": len(seconds), "s_per_epoch": statistics.median(seconds), "total_min": sum(seconds) / 60}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="training/configs/fer2013.yaml", help="the recipe (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="shorten every run to N epochs (the schedule follows)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--data", help="FER2013 CSV (default: the config's)")
    p.add_argument("--out", default="runs/compare", type=Path)
    args = p.parse_args()

    rows = []
    for arch in args.archs:
        out = args.out / arch
        result = out / "result.json"
        if not result.exists():
            cfg = TrainConfig.from_yaml(args.config, arch=arch, epochs=args.epochs, data=args.data)
            best = train(cfg, out, resume=(out / "last.pt").exists())
            result.write_text(json.dumps({
                "arch": arch, "params": count_params(build_model(arch))[0],
                "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"],
                "best_epoch": best["epoch"]}))
        rows.append({**json.loads(result.read_text()), "macs": count_macs(build_model(arch)),
                     **timing(out / "metrics.jsonl")})

    lines = ["| arch | trainable params | M MACs / face | PublicTest acc | macro-F1 | epochs (best) | median s / epoch "
             "| total min |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['arch']} | {r['params']:,} | {r['macs'] / 1e6:.1f} | {r['val_accuracy']:.4f} | "
              f"{r['val_macro_f1']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['s_per_epoch']:.1f} | "
              f"{r['total_min']:.1f} |" for r in rows]
    table = "\n".join(lines)
    info = machine()
    (args.out / "compare.md").write_text(f"{table}\n\nMachine: {info['cpu']}, {info['cores']} cores; "
                                         f"recipe {args.config}, epochs {args.epochs or 'as configured'}.\n")
    (args.out / "compare.json").write_text(json.dumps({"machine": info, "config": args.config, "rows": rows},
                                                      indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
