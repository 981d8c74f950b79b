"""How often FER2013's label matches the FER+ annotators' majority, per class, on one split.

This is the label noise any FER2013 accuracy lives with: the same 48x48 crops, relabelled by
ten annotators each (Barsoum et al. 2016). Prints a Markdown table for MODEL_CARD.md.

    python training/label_agreement.py --split PublicTest
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.classes import FER7  # noqa: E402
from fer_ros.errors import DataError  # noqa: E402
from fer_ros.learning.data import load_fer2013, load_ferplus  # noqa: E402


def labels(fer2013: str, votes: str, split: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(crops, FER2013 label, FER+ majority) of the faces both files have in `split`."""
    fer = load_fer2013(fer2013, split)
    plus = load_ferplus(votes, fer2013, split, soft=True)
    _, i_fer, i_plus = np.intersect1d(fer.rows, plus.rows, return_indices=True)
    return (fer.images[i_fer], [fer.classes[k] for k in fer.labels[i_fer]],
            [plus.classes[k] for k in plus.labels[i_plus]])


def agreement(label: list[str], majority: list[str]) -> list[tuple[str, int, float, str]]:
    """Per FER2013 class: (class, faces, share whose FER+ majority is that class, FER+'s commonest other)."""
    table = []
    for c in FER7:
        theirs = Counter(m for lab, m in zip(label, majority) if lab == c)
        n = sum(theirs.values())
        other = max((k for k in theirs if k != c), key=theirs.get, default="-")
        table.append((c, n, theirs[c] / n if n else 0.0, other))
    table.append(("all", len(label), np.mean(np.array(label) == np.array(majority)), ""))
    return table


def model_split(model: str | None, crops: np.ndarray, label: list[str], majority: list[str]) -> str:
    """The model's mirror-averaged accuracy on FER2013 labels, where FER+ agrees and where it does not."""
    from fer_ros.inference import load_backend
    from fer_ros.learning.evaluate import predict

    net = load_backend(model)
    said = np.array(net.classes)[predict(net, crops, flip=True).argmax(1)]
    label, majority = np.array(label), np.array(majority)
    agree = label == majority
    return (f"{model or 'the shipped model'} (mirror-averaged), accuracy on FER2013 labels: "
            f"{np.mean(said == label):.1%} of all {len(label)} faces; "
            f"{np.mean(said[agree] == label[agree]):.1%} of the {agree.sum()} where FER+ agrees; "
            f"{np.mean(said[~agree] == label[~agree]):.1%} of the {(~agree).sum()} where it does not "
            f"(there it matches the FER+ majority on {np.mean(said[~agree] == majority[~agree]):.1%})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz", help="FER2013 CSV")
    p.add_argument("--votes", default="../shared/data/ferplus/fer2013new.csv", help="FER+ votes CSV")
    p.add_argument("--split", default="PublicTest", help="Training or PublicTest (default: %(default)s)")
    p.add_argument("--model", nargs="?", const="shipped",
                   help="also score this model file (no value: the shipped one) on the faces FER+ agrees with or not")
    args = p.parse_args(argv)
    try:
        crops, label, majority = labels(args.data, args.votes, args.split)
        rows = agreement(label, majority)
        scored = args.model and model_split(None if args.model == "shipped" else args.model, crops, label, majority)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"| FER2013 label ({args.split}) | faces | FER+ majority agrees | FER+ majority most often instead |")
    print("|---|---:|---:|---|")
    for c, n, share, other in rows:
        print(f"| {c} | {n} | {share:.1%} | {other} |")
    if scored:
        print(scored)
    return 0


if __name__ == "__main__":
    sys.exit(main())
