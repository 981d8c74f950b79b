"""Post-hoc class balance: a checkpoint whose logits are corrected for FER2013's class prior.

FER2013's training labels are 3% disgust and 25% happy; a model of its posteriors rarely says the
rare classes that posed datasets are full of. Subtracting tau * log(prior) from the logits estimates
the posterior under a balanced prior (`fer_ros.learning.posthoc.correct`, folded into the head's bias).

    python training/prior_correction.py fer_ros/weights/fer2013_arch1.pt --tau 0.5 --out runs/prior05.pt
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_ros.errors import FerRosError  # noqa: E402
from fer_ros.learning.posthoc import correct  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="an ARCH-1..4 GAP-head checkpoint (.pt)")
    p.add_argument("--tau", type=float, required=True, help="strength of the correction (0 = none, 1 = full)")
    p.add_argument("--out", required=True, help="the corrected checkpoint to write (.pt)")
    args = p.parse_args(argv)
    try:
        prior = correct(args.checkpoint, args.tau, args.out)
    except FerRosError as e:
        print(f"prior_correction: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: logits - {args.tau} * log(prior), prior {np.round(prior, 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
