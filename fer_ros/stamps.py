"""The one check of image stamps where they enter the pipeline (`Pipeline.process`) and the recognizer.

Smoothing, the detection schedule and the visual tracker all subtract stamps, so one NaN would
poison a track for good. `StampCheck.check` turns what a stream may send into a usable stamp:

- a stamp that is not a finite number (NaN, inf, None, text) is refused: the frame is processed at
  the stream's last good stamp (0 before any), so time stands still for it;
- a stamp before the last one (a clock reset, a bag played again) is taken, and the caller told to
  restart what it holds for that stream (the pipeline's tracks, a face's average).

Each is a `FerRosWarning` the first time and every 10th, 100th, ... time after, so a broken driver
does not flood the log; `refused` and `backwards` count them all.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Hashable

from .errors import FerRosWarning


class StampCheck:
    """The last good stamp per stream key (one camera: the default key), and counts of bad ones."""

    def __init__(self, what: str = "frame"):
        self.what = what
        self.last: dict[Hashable, float] = {}
        self.counts: Counter = Counter()

    def check(self, stamp, key: Hashable = None) -> tuple[float, bool]:
        """(the stamp to use, whether time went back, so the caller restarts the stream's state)."""
        last = self.last.get(key)
        try:
            value = float(stamp)
        except (TypeError, ValueError, OverflowError):
            value = math.nan
        if not math.isfinite(value):
            use = 0.0 if last is None else last
            self._warn("refused", f"{self.what} stamp {stamp!r} is not a finite time: processed at the last good "
                                  f"stamp, {use:.3f} s, so smoothing and tracking do not advance over it")
            self.last[key] = use
            return use, False
        self.last[key] = value
        if last is not None and value < last:
            self._warn("backwards", f"{self.what} stamp {value:.3f} s is {last - value:.3g} s before the previous "
                                    "one (a clock reset, or a bag played again?): starting over from it")
            return value, True
        return value, False

    def forget(self, key: Hashable = None) -> None:
        """A new stream under `key`: any stamp is fine next."""
        self.last.pop(key, None)

    def reset(self) -> None:
        self.last.clear()

    def _warn(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        n = self.counts[kind]
        if str(n).rstrip("0") == "1":  # 1, 10, 100, ...
            warnings.warn(FerRosWarning(message + (f" ({n} such stamps so far)" if n > 1 else "")), stacklevel=3)
