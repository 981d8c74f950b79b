"""The node's ROS-free logic: parameters, newest-frame policy, statistics, per-face topics, listener hysteresis."""

import dataclasses
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fer_ros.classes import UNKNOWN
from fer_ros.config import ConfigError, PipelineConfig, load_config
from fer_ros.ros.expression_listener import Change, DominantEmotions, describe
from fer_ros.ros.node_logic import (
    COUNTERS,
    PARAMETERS,
    PIPELINE_NAMES,
    FaceRecognizer,
    FrameStatistics,
    LatestPerKey,
    LatestSlot,
    NodeConfig,
    TrackTopics,
    TransportLoss,
    configs_from_parameters,
    diagnostic_level,
    face_crop,
    launch_file_on_command_line,
    parameter_from_text,
    unknown_launch_arguments,
    validate_parameter,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "fer_ros" / "config" / "fer.yaml"


# --- parameters ---------------------------------------------------------------------------------------------------

def test_parameters_come_from_the_config_dataclasses():
    pipeline = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    node = {f.name: f for f in dataclasses.fields(NodeConfig)}
    assert not pipeline.keys() & node.keys()
    assert list(PARAMETERS) == [*pipeline, *node] and PIPELINE_NAMES == pipeline.keys()
    for name, spec in PARAMETERS.items():
        meta = (pipeline.get(name) or node[name]).metadata
        assert spec.description == meta["description"] and spec.description
        assert spec.range == meta.get("range") and spec.dynamic == meta["dynamic"]
        if meta.get("choices"):
            assert all(c in spec.text for c in meta["choices"])
    assert PARAMETERS["model"].default == "" and PARAMETERS["backend"].dynamic is False
    assert PARAMETERS["confidence_threshold"].dynamic and PARAMETERS["smoothing_tau_s"].dynamic
    assert not any(PARAMETERS[n].dynamic for n in node)


@pytest.mark.parametrize("name,value", [
    ("confidence_threshold", 0.55), ("confidence_threshold", 1), ("smoothing_tau_s", 0.0), ("detector", "yunet"),
    ("track_min_hits", 3), ("haar_eyes", False),
])
def test_valid_run_time_changes(name, value):
    assert validate_parameter(name, value) is None


@pytest.mark.parametrize("name,value,words", [
    ("confidence_threshold", 1.5, "0.0..1.0"),
    ("smoothing_tau_s", -1.0, "smoothing_tau_s"),
    ("smoothing_tau_s", "fast", "smoothing_tau_s"),
    ("track_min_hits", 0, "track_min_hits"),
    ("track_min_hits", 2.5, "track_min_hits"),
    ("detector", "dlib", "yunet"),
    ("haar_eyes", 1, "haar_eyes"),
    ("backend", "torch", "read-only"),
    ("image_topic", "other", "read-only"),
    ("no_such_parameter", 1, "unknown"),
])
def test_bad_values_are_rejected_with_a_reason(name, value, words):
    reason = validate_parameter(name, value)
    assert reason and words in reason


def test_start_up_values_of_node_parameters():
    assert validate_parameter("transport", "compressed", running=False) is None
    assert "raw, compressed" in validate_parameter("transport", "ffmpeg", running=False)
    assert validate_parameter("diagnostics_period_s", 2, running=False) is None
    assert "0.1..60.0" in validate_parameter("diagnostics_period_s", 0.0, running=False)
    assert "bool" in validate_parameter("rep155", "yes", running=False)
    assert "str" in validate_parameter("faces_topic", 3, running=False)


def test_configs_from_parameters():
    values = {name: spec.default for name, spec in PARAMETERS.items()}
    pipeline, node = configs_from_parameters(values)
    assert pipeline == PipelineConfig() and node == NodeConfig() and pipeline.model is None
    pipeline, node = configs_from_parameters({"model": "/m/a.onnx", "smoothing_tau_s": 2, "rep155": True,
                                              "diagnostics_period_s": 5, "use_sim_time": True})
    assert pipeline.model == "/m/a.onnx" and pipeline.smoothing_tau_s == 2.0
    assert node.rep155 is True and isinstance(node.diagnostics_period_s, float)
    with pytest.raises(ConfigError, match="transport"):
        configs_from_parameters({"transport": "ffmpeg"})
    with pytest.raises(ConfigError, match="confidence_threshold"):
        configs_from_parameters({"confidence_threshold": 3.0})


def test_config_file_lists_every_parameter_with_its_default():
    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert list(values) == list(PARAMETERS)
    for name, value in values.items():
        assert value == PARAMETERS[name].default, name
        assert type(value) is type(PARAMETERS[name].default), f"{name}: ROS 2 parameters are strictly typed"
        assert validate_parameter(name, value, running=False) is None
    assert load_config(CONFIG) == PipelineConfig()


def test_logic_modules_do_not_import_ros():
    code = ("import sys, fer_ros.ros.node_logic, fer_ros.ros.messages, fer_ros.ros.expression_listener; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosbags', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# --- newest-frame slot ----------------------------------------------------------------------------------------------

def test_slot_keeps_only_the_newest_frame():
    slot = LatestSlot()
    assert slot.take(timeout=0.01) is None
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True  # 1 and 2 dropped
    assert slot.take(timeout=0) == 3 and slot.take(timeout=0.01) is None


def test_slot_close_releases_a_waiting_worker():
    slot, got = LatestSlot(), []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=10)))
    worker.start()
    time.sleep(0.05)
    slot.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and got == [None]


def test_slow_worker_drops_stale_frames_instead_of_queueing():
    slot, stats, processed = LatestSlot(), FrameStatistics(), []
    busy, release = threading.Event(), threading.Event()

    def worker():  # inference slower than the camera: busy on frame 0 while frames 1..9 arrive
        while (item := slot.take(timeout=5)) is not None:
            processed.append(item)
            busy.set()
            release.wait(timeout=5)

    thread = threading.Thread(target=worker)
    thread.start()
    stats.on_input(0.0, slot.put(0))
    assert busy.wait(timeout=5)
    for i in range(1, 10):
        stats.on_input(i * 0.033, slot.put(i))
    release.set()
    deadline = time.monotonic() + 5
    while len(processed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    slot.close()
    thread.join(timeout=5)
    assert processed == [0, 9]  # the newest frame next, not the stale ones in order
    assert stats.dropped == 8


# --- statistics -----------------------------------------------------------------------------------------------------

def test_statistics_rates_latency_and_faces():
    stats = FrameStatistics(window_s=10.0)
    for i in range(300):  # 30 Hz camera for 10 s, every third frame processed, 40..60 ms late
        t = 100.0 + i / 30
        stats.on_input(t, dropped_one=i % 3 != 0)
        if i % 3 == 0:
            stats.on_output(t + 0.05, 0.04 + 0.02 * (i % 2), n_faces=2 if i % 2 else 1)
    stats.on_failure()
    s = stats.summary(110.0)
    assert s["input_rate_hz"] == pytest.approx(30.0, rel=0.02)
    assert s["processed_rate_hz"] == pytest.approx(10.0, rel=0.02)
    assert s["frames_processed"] == 100 and s["frames_dropped"] == 200 and s["frames_failed"] == 1
    assert s["latency_median_ms"] == pytest.approx(50.0) and s["latency_max_ms"] == pytest.approx(60.0)
    assert s["faces_per_frame"] == pytest.approx(1.5)
    later = stats.summary(125.0)  # nothing for 15 s: the window is empty
    assert later["input_rate_hz"] == 0 and later["latency_max_ms"] == 0 and later["frames_processed"] == 100


def test_statistics_restart_when_the_clock_jumps_back():
    stats = FrameStatistics(window_s=10.0)
    for i in range(50):
        stats.on_input(1000.0 + i * 0.1)
    stats.on_input(5.0)  # a bag played again from its start
    s = stats.summary(5.5)
    assert s["input_rate_hz"] == pytest.approx(1 / 0.5)


def test_diagnostic_level():
    base = {"faces_per_frame": 1.0, "frames_dropped": 0}
    assert diagnostic_level({**base, "input_rate_hz": 0.0, "processed_rate_hz": 0.0})[0] == "WARN"
    assert diagnostic_level({**base, "input_rate_hz": 30.0, "processed_rate_hz": 0.0})[0] == "WARN"
    level, text = diagnostic_level({**base, "input_rate_hz": 30.0, "processed_rate_hz": 6.0})
    assert level == "WARN" and "20%" in text
    assert diagnostic_level({**base, "input_rate_hz": 30.0, "processed_rate_hz": 29.0})[0] == "OK"


# --- per-face topics ------------------------------------------------------------------------------------------------

def test_track_topics_follow_tracks_with_grace():
    topics = TrackTopics()
    assert topics.update(["fer2", "fer1"], keep=1) == (["fer1", "fer2"], [])
    assert topics.update(["fer1"], keep=1) == ([], [])  # fer2 missed once: kept
    assert topics.ids == ["fer1", "fer2"]
    assert topics.update(["fer1", "fer2"], keep=1) == ([], [])  # back again
    assert topics.update(["fer3"], keep=1) == (["fer3"], [])
    assert topics.update(["fer3"], keep=1) == ([], ["fer1", "fer2"])
    assert topics.update([], keep=0) == ([], ["fer3"]) and topics.ids == []


# --- listener hysteresis -------------------------------------------------------------------------------------------

def _p(**probs):
    return {"happy": 0.0, "sad": 0.0, "neutral": 0.0, **probs}


def test_dominant_emotion_needs_to_hold():
    emo = DominantEmotions(enter=0.5, leave=0.3, margin=0.1, hold_s=0.5)
    assert emo.update(0.0, {1: _p(happy=0.8, neutral=0.2)}) == []
    assert emo.update(0.3, {1: _p(happy=0.8, neutral=0.2)}) == []
    assert emo.update(0.5, {1: _p(happy=0.8, neutral=0.2)}) == [Change(1, None, "happy", 0.8)]
    assert emo.dominant(1) == "happy"


def test_dominant_emotion_ignores_flicker_and_small_leads():
    emo = DominantEmotions(enter=0.5, leave=0.3, margin=0.1, hold_s=0.5)
    emo.update(0.0, {1: _p(happy=0.9)})
    emo.update(0.6, {1: _p(happy=0.9)})
    t = 0.6
    for probs in [_p(sad=0.7, happy=0.3), _p(happy=0.8), _p(sad=0.6, happy=0.4), _p(happy=0.7)] * 3:  # flicker
        t += 0.2
        assert emo.update(t, {1: probs}) == []
    assert emo.update(t + 1.0, {1: _p(sad=0.52, happy=0.48)}) == []  # sad leads by less than the margin
    assert emo.update(t + 2.0, {1: _p(sad=0.52, happy=0.48)}) == []
    assert emo.dominant(1) == "happy"
    emo.update(t + 3.0, {1: _p(sad=0.7, happy=0.3)})
    assert emo.update(t + 3.5, {1: _p(sad=0.7, happy=0.3)}) == [Change(1, "happy", "sad", 0.7)]


def test_dominant_emotion_is_given_up_and_people_leave():
    emo = DominantEmotions(enter=0.5, leave=0.3, margin=0.1, hold_s=0.0, absent_s=0.0)
    assert emo.update(0.0, {1: _p(happy=0.9), 2: _p(sad=0.6)}) == [Change(1, None, "happy", 0.9),
                                                                    Change(2, None, "sad", 0.6)]
    assert emo.update(0.1, {1: _p(happy=0.35, sad=0.33, neutral=0.32), 2: _p(sad=0.6)}) == []  # above `leave`
    assert emo.update(0.2, {1: _p(happy=0.25, sad=0.25, neutral=0.45)}) == [
        Change(2, "sad", None, 0.0, left=True), Change(1, "happy", None, 0.25)]
    assert emo.dominant(1) is None and emo.dominant(2) is None


def test_hysteresis_parameters_are_checked_and_changes_described():
    with pytest.raises(ValueError, match="leave < enter"):
        DominantEmotions(enter=0.3, leave=0.5)
    with pytest.raises(ValueError):
        DominantEmotions(hold_s=-1)
    assert describe(Change(4, "sad", "happy", 0.71)) == "person 4: sad -> happy (0.71)"
    assert describe(Change(4, None, "happy", 0.71)) == "person 4: no dominant emotion -> happy (0.71)"
    assert "left" in describe(Change(4, "happy", None, 0.0, left=True))
    assert "no dominant emotion any more" in describe(Change(4, "happy", None, 0.2))


def test_listener_survives_a_face_without_probabilities():
    from fer_ros.ros.expression_listener import DominantEmotions

    emotions = DominantEmotions()
    assert emotions.update(0.0, {1: {}}) == []
    emotions.update(1.0, {1: {"happy": 0.9, "sad": 0.1}})
    changes = emotions.update(2.0, {1: {"happy": 0.9, "sad": 0.1}})
    assert [(c.track_id, c.new) for c in changes] == [(1, "happy")]


def test_presence_has_hysteresis_in_time():
    # a face the detector misses now and then over 20 s: it never "leaves"
    emo = DominantEmotions(hold_s=0.5, absent_s=1.0)
    left = []
    for i in range(200):  # 10 Hz
        t = i * 0.1
        seen = i % 7 not in (3, 4, 5)  # missing for 0.3 s every 0.7 s
        left += [c for c in emo.update(t, {1: _p(happy=0.9)} if seen else {}) if c.left]
    assert left == [] and emo.dominant(1) == "happy"
    assert emo.update(20.5, {}) == []  # missing 0.6 s: still there
    assert emo.update(21.0, {}) == [Change(1, "happy", None, 0.0, left=True)]  # missing >= 1 s: left, once
    assert emo.update(21.5, {}) == [] and emo.people == {}


def test_presence_survives_a_bag_played_again():
    emo = DominantEmotions(hold_s=0.0, absent_s=1.0)
    emo.update(100.0, {1: _p(happy=0.9)})
    assert emo.update(0.0, {}) == []  # time went back: absence counts from here
    assert emo.update(0.5, {}) == []
    assert [c.left for c in emo.update(1.0, {})] == [True]
    with pytest.raises(ValueError, match="absent_s"):
        DominantEmotions(absent_s=-1.0)


# --- REP-155 modes, launch arguments, transport loss ------------------------------------------------------------

def test_mode_parameters():
    assert PARAMETERS["mode"].default == "detector" and PARAMETERS["mode"].choices == ("detector", "recognizer")
    assert "recognizer" in validate_parameter("mode", "tracker", running=False)
    assert validate_parameter("recognizer_image", "cropped", running=False) is None
    assert "aligned, cropped" in validate_parameter("recognizer_image", "frontalized", running=False)
    assert "16..1024" in validate_parameter("face_image_size", 8, running=False)
    _, node = configs_from_parameters({"mode": "recognizer", "rep155_expression": False})
    assert node.mode == "recognizer" and node.rep155_expression is False and node.face_image_size == 128


@pytest.mark.parametrize("name,text,value", [
    ("rep155", "true", True), ("rep155", "False", False), ("debug_image", "0", False), ("rep155", " yes", True),
    ("detector_model", "/m/yunet.onnx", "/m/yunet.onnx"), ("model", "123", "123"), ("mode", "recognizer", "recognizer"),
    ("smoothing_tau_s", "2", 2.0), ("track_min_hits", "3", 3), ("face_image_size", "96", 96),
])
def test_parameter_from_text(name, text, value):
    got = parameter_from_text(name, text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("name,text,words", [
    ("rep155", "maybe", "rep155 must be bool"), ("track_min_hits", "2.5", "track_min_hits must be int"),
    ("confidence_threshold", "3", "0.0..1.0"), ("mode", "tracker", "detector, recognizer"),
    ("rep15", "true", "did you mean 'rep155'"),
])
def test_parameter_from_text_refuses_with_the_reason(name, text, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        parameter_from_text(name, text)


def test_unknown_launch_arguments_are_named_by_the_launch_file_run():
    known = ["rep155", "model", "namespace"]
    argv = ["/opt/ros/jazzy/bin/ros2", "launch", "fer_ros", "fer.launch.py", "rep155:=true", "modle:=x.onnx"]
    reason = unknown_launch_arguments("/ws/install/fer_ros/share/fer_ros/launch/fer.launch.py", argv, known)
    assert reason.startswith("fer.launch.py: unknown launch argument 'modle' (did you mean 'model'?)")
    assert "namespace, model, rep155" not in reason and "it takes: model, namespace, rep155" in reason
    assert unknown_launch_arguments("fer.launch.py", argv[:5], known) is None
    # included by another launch file: that one checks the command line
    replay = ["ros2", "launch", "fer_ros", "replay.launch.py", "bag:=/b", "rate:=2"]
    assert unknown_launch_arguments("fer.launch.py", replay, known) is None
    assert "'bag', 'rate'" in unknown_launch_arguments("replay.launch.py", replay, known)
    assert launch_file_on_command_line(["ros2", "launch", "./launch/fer.launch.py", "a:=b"]) == "fer.launch.py"
    assert launch_file_on_command_line(["launch_test", "test/test_node_launch.py"]) == "test_node_launch.py"
    assert launch_file_on_command_line(["ros2", "launch", "--debug"]) is None


def test_transport_loss_from_publication_sequence_numbers():
    loss = TransportLoss()
    assert loss.value() == "unknown (no frame yet)"
    assert [loss.observe("image", n) for n in (1, 2, 3, 7, 8, 10)] == [0, 0, 0, 3, 0, 1]
    assert loss.lost == 4 and loss.value() == 4
    assert loss.observe("image", 1) == 0 and loss.observe("image", 3) == 1  # publisher restarted
    assert loss.observe("other", 50) == 0 and loss.observe("other", 52) == 1  # topics counted apart
    assert loss.value() == 6
    assert loss.observe("image", 9, publishers=2) == 0 and loss.value() == "6+ (unknown while several publishers " \
        "share the topic)"
    loss.forget("other")
    assert loss.observe("other", 90) == 0


def test_transport_loss_unknown_without_sequence_numbers():
    loss = TransportLoss()
    assert loss.observe("image", None) == 0 and loss.observe("image", None) == 0
    assert "no publication sequence numbers" in loss.value()
    assert set(COUNTERS) >= {"frames_received", "frames_lost_in_transport", "frames_dropped", "frames_failed",
                             "frames_processed"}


def test_statistics_count_received_frames():
    stats = FrameStatistics()
    for i in range(5):
        stats.on_input(float(i), dropped_one=i > 2)
    s = stats.summary(5.0)
    assert s["frames_received"] == 5 and s["frames_dropped"] == 2
    assert set(s) - {"input_rate_hz", "processed_rate_hz", "latency_median_ms", "latency_max_ms",
                     "faces_per_frame"} <= set(COUNTERS)


def test_latest_per_key_keeps_the_newest_image_of_each_face():
    inbox = LatestPerKey()
    assert inbox.take(timeout=0.01) == {}
    assert inbox.put("f1", 1) is False and inbox.put("f2", 1) is False
    assert inbox.put("f1", 2) is True
    assert inbox.take(timeout=0) == {"f1": 2, "f2": 1} and inbox.take(timeout=0.01) == {}
    inbox.put("f3", 1)
    inbox.discard("f3")
    assert inbox.take(timeout=0.01) == {}
    got = []
    worker = threading.Thread(target=lambda: got.append(inbox.take(timeout=10)))
    worker.start()
    time.sleep(0.05)
    inbox.close()
    worker.join(timeout=2)
    assert got == [{}]


class _Backend:
    """A stand-in classifier: class 0 for bright crops, class 1 for dark ones."""

    classes = ("happy", "sad", "neutral")
    input_size = 48

    def __init__(self):
        self.calls = []

    def classify(self, crops, flip=False, zoom=1.0):
        self.calls.append((crops.shape, flip, zoom))
        bright = crops.reshape(len(crops), -1).mean(1) > 127
        return np.array([[0.8, 0.1, 0.1] if b else [0.1, 0.8, 0.1] for b in bright], np.float32)


def test_face_crop_cuts_the_padding_and_squares_the_face():
    face = np.full((128, 64, 3), 200, np.uint8)  # a tall face, 0-padded to 128x128 as hri_face_detect does
    padded = np.zeros((128, 128, 3), np.uint8)
    padded[:, 32:96] = face
    crop = face_crop(padded, 48)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8 and crop.min() == 200  # no black bars left
    assert face_crop(np.full((48, 48), 7, np.uint8), 48).shape == (48, 48)
    assert face_crop(np.zeros((128, 128, 3), np.uint8), 48).max() == 0  # an all-black image stays whole


def test_recognizer_classifies_smooths_and_forgets_per_face():
    backend = _Backend()
    config = PipelineConfig(smoothing_tau_s=1.0, confidence_threshold=0.6, flip_average=True)
    rec = FaceRecognizer(backend, config)
    bright, dark = np.full((128, 128, 3), 220, np.uint8), np.full((128, 128, 3), 30, np.uint8)
    first = rec.classify({"fb": (bright, 10.0), "fa": (dark, 10.0)})
    assert [r.face_id for r in first] == ["fa", "fb"] and backend.calls == [((2, 48, 48), True, 1.0)]
    assert [r.label for r in first] == ["sad", "happy"] and first[1].confidence == pytest.approx(0.8)
    # fb turns dark: its smoothed probabilities move by 1 - exp(-dt / tau), its label follows only later
    later = rec.classify({"fb": (dark, 10.5)})
    alpha = 1 - np.exp(-0.5)
    np.testing.assert_allclose(later[0].probs, (1 - alpha) * np.array([0.8, 0.1, 0.1]) + alpha *
                               np.array([0.1, 0.8, 0.1]), rtol=1e-5)
    np.testing.assert_allclose(later[0].raw_probs, [0.1, 0.8, 0.1])
    assert later[0].label == UNKNOWN and later[0].confidence == pytest.approx(0.525, abs=1e-3)  # below 0.6
    rec.forget("fb")
    assert rec.classify({"fb": (dark, 11.0)})[0].label == "sad"  # a new face starts afresh
    assert rec.classify({"fa": (bright, 1.0)})[0].label == "happy"  # time went back: restarts too
    assert rec.classify({}) == []
