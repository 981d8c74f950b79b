"""Each person's dominant emotion with hysteresis: the logic of the example listener, without ROS.

A virtual-agent controller wants a person's emotion to change when their face really changes,
not on every flicker of the classifier. A class becomes a person's dominant emotion when its
(already smoothed) probability stays at or above `enter` for `hold_s` seconds while beating the
current one by `margin`; the dominant emotion is given up (None) when its probability stays below
`leave` for `hold_s`. Presence has hysteresis in time too: a person missing from the frames (a face the
detector misses now and then) has left only once they have been missing for `absent_s` seconds; until
then they keep their state. The ROS side is `fer_ros.ros.node.ExpressionListener` (`ros2 run fer_ros
expression_listener`), which feeds fer_ros/FaceEmotionArray messages to `DominantEmotions.update`.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """A person's dominant emotion changed (None = no dominant emotion, or the person left)."""

    track_id: int
    old: str | None
    new: str | None
    probability: float  # of `new` (of `old` when new is None)
    left: bool = False  # the person is no longer tracked


@dataclass
class _Person:
    dominant: str | None = None
    candidate: str | None = None  # what the dominant emotion would change to
    since: float = 0.0  # stamp at which the candidate first qualified
    last_seen: float = 0.0  # stamp of the last frame that had the person


class DominantEmotions:
    """Hysteresis over per-frame class probabilities, per tracked person."""

    def __init__(self, enter: float = 0.5, leave: float = 0.3, margin: float = 0.1, hold_s: float = 0.5,
                 absent_s: float = 1.0) -> None:
        if not 0.0 <= leave < enter <= 1.0:
            raise ValueError(f"need 0 <= leave < enter <= 1, got leave={leave}, enter={enter}")
        if margin < 0.0 or hold_s < 0.0 or absent_s < 0.0:
            raise ValueError(f"margin, hold_s and absent_s must be >= 0, got {margin}, {hold_s}, {absent_s}")
        self.enter, self.leave, self.margin, self.hold_s, self.absent_s = enter, leave, margin, hold_s, absent_s
        self.people: dict[int, _Person] = {}

    def dominant(self, track_id: int) -> str | None:
        person = self.people.get(track_id)
        return person.dominant if person else None

    def update(self, stamp: float, faces: Mapping[int, Mapping[str, float]]) -> list[Change]:
        """One frame: track id -> {class: probability} of everyone visible; returns the changes it causes.

        People missing from `faces` for `absent_s` seconds (by the stamps) have left.
        """
        changes = []
        for tid, p in list(self.people.items()):
            if tid in faces:
                p.last_seen = stamp
            elif stamp < p.last_seen:  # time went back (a bag played again): count the absence from now
                p.last_seen = stamp
            elif stamp - p.last_seen >= self.absent_s:
                changes.append(Change(tid, p.dominant, None, 0.0, left=True))
                del self.people[tid]
        for tid, probs in faces.items():
            if not probs:  # nothing to judge this frame: keep the person as they were
                continue
            person = self.people.setdefault(tid, _Person(last_seen=stamp))
            change = self._step(tid, person, stamp, probs)
            if change:
                changes.append(change)
        return changes

    def _step(self, tid: int, person: _Person, stamp: float, probs: Mapping[str, float]) -> Change | None:
        top = max(probs, key=probs.get)
        current = probs.get(person.dominant, 0.0) if person.dominant else 0.0
        if top != person.dominant and probs[top] >= self.enter and probs[top] - current >= self.margin:
            candidate, value = top, probs[top]
        elif person.dominant and current < self.leave:
            candidate, value = None, current
        else:
            person.candidate = person.dominant
            return None
        if candidate != person.candidate:
            person.candidate, person.since = candidate, stamp
        if stamp - person.since < self.hold_s:
            return None
        old, person.dominant = person.dominant, candidate
        return Change(tid, old, candidate, value)


def describe(change: Change) -> str:
    """One log line for a change."""
    if change.left:
        return f"person {change.track_id} left" + (f" (was {change.old})" if change.old else "")
    if change.new is None:
        return f"person {change.track_id}: no dominant emotion any more ({change.old} fell to {change.probability:.2f})"
    return f"person {change.track_id}: {change.old or 'no dominant emotion'} -> {change.new} ({change.probability:.2f})"
