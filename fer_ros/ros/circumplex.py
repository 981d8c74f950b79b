"""Expression classes on Russell's circumplex (valence, arousal) and their ROS4HRI names.

Each emotion class sits on the unit circle at the angle that Russell (1980, "A circumplex
model of affect", J. Pers. Soc. Psychol. 39(6), 1161-1178, direct circular scaling of 28
affect words; 0 deg = pleasure, 90 deg = arousal) gives the nearest of his words:
valence = cos(angle), arousal = sin(angle). Neutral is the centre. Disgust and contempt are
not among Russell's 28 words; they are placed by us in the unpleasant, mildly aroused region
between his "annoyed" (123.0 deg) and "distressed" (137.6 deg).

A face's valence/arousal is the probability-weighted mean of its classes' points, so an
uncertain face drifts towards the neutral centre.
"""

import functools
import math

import numpy as np

#: class -> (Russell's word, angle in degrees); None = the centre (valence = arousal = 0)
ANGLES: dict[str, tuple[str, float] | None] = {
    "happy": ("happy", 7.8),
    "surprise": ("astonished", 69.8),
    "angry": ("angry", 99.0),
    "fear": ("afraid", 116.9),
    "contempt": ("annoyed", 123.0),
    "disgust": ("between annoyed and distressed", 130.0),
    "sad": ("sad", 207.5),
    "neutral": None,
}

#: class -> hri_msgs/Expression constant (hri_msgs has no contempt; Plutchik's contempt = disgust + anger)
HRI_EXPRESSIONS = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "scared",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
    "contempt": "disgusted",
}


def point(name: str) -> tuple[float, float]:
    """(valence, arousal) of one class, each in -1..1; KeyError for a class not in ANGLES."""
    entry = ANGLES[name]
    if entry is None:
        return 0.0, 0.0
    angle = math.radians(entry[1])
    return math.cos(angle), math.sin(angle)


@functools.lru_cache(maxsize=8)
def _points(classes: tuple[str, ...]) -> np.ndarray:
    return np.array([point(c) if c in ANGLES else (0.0, 0.0) for c in classes], dtype=np.float64)


def valence_arousal(classes: tuple[str, ...] | list[str], probs: np.ndarray) -> tuple[float, float]:
    """Probability-weighted (valence, arousal) of a face; classes without a point count as neutral."""
    points = _points(tuple(classes))
    p = np.asarray(probs, dtype=np.float64)
    valence, arousal = np.clip(p @ points / max(float(p.sum()), 1e-12), -1.0, 1.0)
    return float(valence), float(arousal)
