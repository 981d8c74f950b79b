"""Tracker ids, confirmation and expiry; stamp-based probability smoothing."""

import math

import numpy as np
import pytest

from fer_ros.vision.tracking import Track, Tracker, ema_alpha, iou


def box(x, y, s=50):
    return [x, y, s, s]


def test_iou():
    a = np.array([box(0, 0, 10)])
    assert iou(a, [box(0, 0, 10)])[0, 0] == pytest.approx(1.0)
    assert iou(a, [box(5, 0, 10)])[0, 0] == pytest.approx(50 / 150)
    assert iou(a, [box(20, 20, 10)])[0, 0] == 0.0
    assert iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_ema_alpha():
    assert ema_alpha(0.1, 0.0) == 1.0
    assert ema_alpha(0.5, 0.5) == pytest.approx(1 - math.exp(-1))
    assert ema_alpha(-1.0, 0.5) == 0.0


@pytest.mark.parametrize("fps", [5, 15, 60])
def test_smoothing_depends_on_time_not_frame_rate(fps):
    """A step from one class to another reaches the same mix after 0.4 s at any frame rate."""
    track = Track(np.zeros(4, np.float32))
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    track.smooth(a, 10.0, tau=0.5)
    for i in range(1, round(0.4 * fps) + 1):
        probs = track.smooth(b, 10.0 + i / fps, tau=0.5)
    assert probs[1] == pytest.approx(1 - math.exp(-0.4 / 0.5), abs=1e-5)
    assert probs.sum() == pytest.approx(1.0)


def test_smoothing_restarts_when_time_goes_back():
    track = Track(np.zeros(4, np.float32))
    track.smooth(np.array([1.0, 0.0]), 5.0, tau=1.0)
    assert track.smooth(np.array([0.0, 1.0]), 5.1, tau=1.0)[0] > 0.8
    np.testing.assert_allclose(track.smooth(np.array([0.0, 1.0]), 1.0, tau=1.0), [0.0, 1.0])  # bag replayed
    np.testing.assert_allclose(track.smooth(np.array([1.0, 0.0]), 2.0, tau=0.0), [1.0, 0.0])  # tau 0: no smoothing


def test_confirmation_after_min_hits():
    tracker = Tracker(min_hits=3)
    ids = [[t.id for t in tracker.update([box(100 + 2 * i, 100)])] for i in range(4)]
    assert ids == [[-1], [-1], [1], [1]]


def test_tentative_tracks_die_on_a_miss_and_burn_no_id():
    tracker = Tracker(min_hits=2)
    tracker.update([box(0, 0)])          # a one-frame false detection
    tracker.update([])
    assert tracker.tracks == []
    tracker.update([box(300, 300)])
    assert [t.id for t in tracker.update([box(302, 300)])] == [1]


def test_track_kept_for_max_missed_frames():
    tracker = Tracker(min_hits=1, max_missed=2)
    assert tracker.update([box(100, 100)])[0].id == 1
    tracker.update([])
    tracker.update([])
    assert tracker.update([box(104, 100)])[0].id == 1, "a track survives max_missed empty frames"
    for _ in range(3):
        tracker.update([])
    assert tracker.tracks == []
    assert tracker.update([box(104, 100)])[0].id == 2


def test_two_faces_keep_their_ids_and_fast_motion_uses_centre_distance():
    tracker = Tracker(min_hits=1, iou_threshold=0.5, max_distance=0.5)
    assert [t.id for t in tracker.update([box(0, 0), box(300, 0)])] == [1, 2]
    # reversed detection order, small moves
    assert [t.id for t in tracker.update([box(305, 5), box(4, 3)])] == [2, 1]
    # a 20 px jump of a 50 px face: IoU 0.43 < 0.5, but the centres are 0.4 face sizes apart
    moved = [box(24, 3)]
    assert iou(np.array(moved), np.array([box(4, 3)]))[0, 0] < 0.5
    assert [t.id for t in tracker.update(moved + [box(305, 5)])] == [1, 2]
    # far away: a new face
    assert [t.id for t in tracker.update([box(150, 200), box(305, 5)])] == [3, 2]


def test_reset_restarts_ids():
    tracker = Tracker(min_hits=1)
    tracker.update([box(0, 0)])
    tracker.reset()
    assert tracker.update([box(200, 200)])[0].id == 1
