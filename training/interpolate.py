"""Weight-space interpolation (WiSE-FT, Wortsman et al. 2022) between a model and one fine-tuned from it.

Every weight and batch-norm statistic of the new checkpoint is (1 - alpha) * A + alpha * B: one ARCH-1 of
the same size and cost, between what A knew and what B learnt (`fer_ros.learning.posthoc.interpolate`).

    python training/interpolate.py fer_ros/weights/fer2013_arch1.pt runs/mix_gentle/prior05.pt --alpha 0.5 \\
        --out runs/wise/mix_gentle_050.pt
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.errors import FerRosError  # noqa: E402
from fer_ros.learning.posthoc import interpolate  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the model fine-tuned from (.pt); alpha 0 gives it back")
    p.add_argument("b", help="the fine-tuned model (.pt); alpha 1 gives it back, and its metadata is kept")
    p.add_argument("--alpha", type=float, required=True, help="share of B, 0..1")
    p.add_argument("--out", required=True, help="the interpolated checkpoint to write (.pt)")
    args = p.parse_args(argv)
    try:
        interpolate(args.a, args.b, args.alpha, args.out)
    except (FerRosError, ValueError) as e:
        print(f"interpolate: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
