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


# ---- identities across scene cuts, on real footage and photos (../shared; skipped without it) ---------------

def _pan(photo, n: int, box_at, size=(640, 360)):
    """n frames panning slowly over a real photo, scaled so that its face `box_at` (x, y, w, h in the photo)
    lands on the frame's centre at 100 px."""
    import cv2

    x, y, w, h = box_at
    s = 100 / w
    for i in range(n):
        m = np.float32([[s, 0, size[0] / 2 - s * (x + w / 2) + i], [0, s, size[1] / 2 - s * (y + h / 2)]])
        yield cv2.warpAffine(photo, m, size, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_a_scene_cut_ends_the_ids_and_new_ones_start(onnx_model, detector):
    """pyfeat_single_face.mp4 spliced onto a slow pan over 12_angry_men.jpg whose nearest face lands where the
    clip's face was (IoU > 0.3: box tracking alone would hand the clip's id to this man). The cut is found on
    the splice frame only, the clip's id never comes back, and the man gets a new one."""
    import cv2
    from conftest import FACES, VIDEOS, YUNET, need

    from fer_ros.config import load_config
    from fer_ros.pipeline import Pipeline

    clip = cv2.VideoCapture(str(need(VIDEOS / "pyfeat_single_face.mp4")))
    first = []
    while (frame := clip.read()[1]) is not None:
        first.append(frame)
    yunet = __import__("fer_ros.vision.faces", fromlist=["make_detector"]).make_detector("yunet", need(YUNET))
    last_box = yunet.detect(first[-1])[0].box
    photo = cv2.imread(str(need(FACES / "group" / "12_angry_men.jpg")))
    men = [f.box for f in yunet.detect(photo)]
    second = list(_pan(photo, 30, min(men, key=lambda b: b[2] * b[3])))  # the smallest face, at 100 px
    overlap = max(iou(last_box, f.box)[0, 0] for f in yunet.detect(second[0]))
    assert overlap > 0.3, f"the splice does not put a face where the clip's was (IoU {overlap:.2f})"
    model = str(YUNET) if detector == "yunet" else None
    pipeline = Pipeline(load_config(detector=detector, detector_model=model, model=str(onnx_model)))
    results = [pipeline.process(frame, i / 30) for i, frame in enumerate(first + second)]
    assert [i for i, r in enumerate(results) if r.scene_cut] == [len(first)]
    before = {f.track_id for r in results[:len(first)] for f in r.faces}
    after = {f.track_id for r in results[len(first):] for f in r.faces}
    assert before and after, (before, after)
    assert not before & after, f"an id crossed the cut: {before & after}"
    assert min(after) > max(before), "new ids count on"


@pytest.mark.parametrize("detector", ["haar", "yunet"])
@pytest.mark.parametrize("name", ["multi_face.jpg", "group/12_angry_men.jpg"])
def test_multi_face_photos_keep_one_id_per_face(onnx_model, detector, name):
    """A real group photo panned slowly: no cut is seen, and every face keeps the id it got."""
    import cv2
    from conftest import FACES, YUNET, need

    from fer_ros.config import load_config
    from fer_ros.pipeline import Pipeline

    photo = cv2.imread(str(need(FACES / name)))
    photo = cv2.resize(photo, (960, round(960 * photo.shape[0] / photo.shape[1])))
    model = str(need(YUNET)) if detector == "yunet" else None
    pipeline = Pipeline(load_config(detector=detector, detector_model=model, model=str(onnx_model)))
    ids: dict[int, list] = {}
    for i in range(20):
        m = np.float32([[1, 0, 2 * i], [0, 1, i]])
        r = pipeline.process(cv2.warpAffine(photo, m, (photo.shape[1], photo.shape[0]),
                                            borderMode=cv2.BORDER_REPLICATE), i / 30)
        assert not r.scene_cut
        for f in r.faces:
            ids.setdefault(f.track_id, []).append(f.box - (2 * i, i, 0, 0))
    assert len(ids) >= 3
    for track_id, boxes in ids.items():  # one id, one face: it stays where that face is in the photo
        boxes = np.array(boxes)
        assert np.ptp(boxes[:, :2], axis=0).max() < 0.5 * boxes[:, 2].mean(), (track_id, boxes)


def test_the_appearance_check_keeps_an_id_from_moving_to_another_person():
    """Two real faces of multi_face.jpg given the same box one frame after the other: a new track, not the old id."""
    import cv2
    from conftest import FACES, need

    from fer_ros.vision.carry import _patch
    from fer_ros.vision.faces import make_detector

    image = cv2.imread(str(need(FACES / "multi_face.jpg")))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = make_detector("haar").detect(image)
    a, b = (_patch(grey, f.box) for f in faces[:2])
    tracker = Tracker(min_hits=1)
    assert tracker.update([box(100, 100)], looks=[a])[0].id == 1
    assert tracker.update([box(102, 100)], looks=[a])[0].id == 1, "the same face keeps its id"
    assert tracker.update([box(104, 100)], looks=[b])[0].id == 2, "another face is another track"
    assert tracker.update([box(104, 100)], looks=[None])[0].id == 2, "no look: boxes decide"
