"""Scene cuts: a frame that shows another scene than the one before it (an edit in a video, a camera switched).

Each frame is reduced to a 32x18 grey thumbnail and a hue-saturation histogram. A cut is a frame whose
thumbnail correlates poorly with the previous one (normalised cross-correlation < `max_correlation`: the
picture's layout changed) and whose colours changed too (Bhattacharyya distance of the histograms >
`min_colour_change`). On the real clips in ../shared, frames within a shot correlate at >= 0.98 with
histogram distances <= 0.08; the cuts in pyfeat_face_noface.mov and pyfeat_noface_face.mov correlate at
<= 0.0 with distances >= 0.9. A pan, a zoom or a person walking by changes one of the two, rarely both.
"""

import cv2
import numpy as np

THUMB = (32, 18)


class SceneCut:
    """Feed every frame to `update`; it says whether that frame starts a new scene."""

    def __init__(self, max_correlation: float = 0.5, min_colour_change: float = 0.25):
        self.max_correlation, self.min_colour_change = max_correlation, min_colour_change
        self.reset()

    def reset(self) -> None:
        self.thumb: np.ndarray | None = None
        self.hist: np.ndarray | None = None

    def update(self, image: np.ndarray) -> bool:
        """Whether this frame (BGR or grey uint8) is a cut from the previous one (never the first)."""
        step = max(1, min(image.shape[:2]) // 180)  # a big frame is sampled first: the thumbnail needs no more
        small = cv2.resize(image[::step, ::step], (2 * THUMB[0], 2 * THUMB[1]), interpolation=cv2.INTER_AREA)
        grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        thumb = cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        if small.ndim == 2:  # grey frames: the grey-level histogram stands in for the colours
            hist = cv2.calcHist([small], [0], None, [32], [0, 256])
        else:
            hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_BGR2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
        cut = False
        if self.thumb is not None and self.hist.shape == hist.shape:
            correlation = float(cv2.matchTemplate(thumb, self.thumb, cv2.TM_CCOEFF_NORMED)[0, 0])
            if not np.isfinite(correlation):  # a flat frame (black, a lens cap) correlates with nothing
                correlation = 1.0 if np.abs(thumb - self.thumb).mean() < 8 else 0.0
            change = float(cv2.compareHist(hist, self.hist, cv2.HISTCMP_BHATTACHARYYA))
            cut = correlation < self.max_correlation and change > self.min_colour_change
        self.thumb, self.hist = thumb, hist
        return cut
