"""Expression class names: the canonical order and the names datasets use for them."""

#: FER2013 label order (0..6); every model and message uses this order.
FER7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: FER+ adds contempt after the FER2013 seven.
FERPLUS8 = FER7 + ("contempt",)

UNKNOWN = "unknown"

_ALIASES = {
    "anger": "angry", "angry": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": "contempt", "co": "contempt",
}


def canonical(name: str) -> str | None:
    """Map a dataset's class name (any case, e.g. 'Happiness') to ours, or None if unknown."""
    return _ALIASES.get(name.strip().lower())
