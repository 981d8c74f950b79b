"""Which magnified test-time view helps: accuracy with `--flip` alone and with `--flip --zoom F`.

Each model is scored once per factor on the same split; the table ends with the mean gain over
the models that were not held out (`--held-out`), so that a factor can be chosen on some models
and checked on another. Prints a Markdown table for MODEL_CARD.md.

    python training/zoom_sweep.py --model runs/a/best.pt --model runs/b/best.pt --held-out fer2013
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.errors import FerRosError  # noqa: E402
from fer_ros.inference import load_backend  # noqa: E402
from fer_ros.learning.data import load_dataset  # noqa: E402
from fer_ros.learning.evaluate import predict, to_model_labels  # noqa: E402

FACTORS = (0.9, 1.05, 1.1, 1.15, 1.2)


def sweep(model: str, data: str, split: str, factors: tuple[float, ...]) -> list[float]:
    """Accuracy of `model` with the mirror view only, then with each zoom factor added."""
    net = load_backend(model, "auto")
    dataset = load_dataset(data, split, classes=net.classes)
    keep, y, _ = to_model_labels(dataset, net.classes)
    return [float(np.mean(predict(net, dataset.images[keep], True, z, progress=False).argmax(1) == y))
            for z in (1.0, *factors)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="model file or shipped name (repeatable)")
    p.add_argument("--held-out", action="append", default=[], metavar="MODEL",
                   help="also scored, but left out of the mean gain (repeatable)")
    p.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz", help="FER2013 CSV (default: %(default)s)")
    p.add_argument("--split", default="PublicTest", help="CSV Usage split (default: %(default)s)")
    p.add_argument("--factor", type=float, action="append", help=f"zoom factors (default: {FACTORS})")
    args = p.parse_args(argv)
    factors = tuple(args.factor or FACTORS)
    try:
        rows = {m: sweep(m, args.data, args.split, factors) for m in args.model + args.held_out}
    except FerRosError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("| model | mirror | " + " | ".join(f"+ zoom {f}" for f in factors) + " |")
    print("|---|" + "---:|" * (len(factors) + 1))
    for m, acc in rows.items():
        held = " (not in the mean)" if m in args.held_out else ""
        print(f"| {m}{held} | {acc[0]:.2%} | " + " | ".join(f"{a:.2%}" for a in acc[1:]) + " |")
    gain = np.mean([np.array(rows[m][1:]) - rows[m][0] for m in args.model], 0) * 100
    print(f"| mean gain of the {len(args.model)} | | " + " | ".join(f"{g:+.2f}" for g in gain) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
