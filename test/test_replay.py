"""`fer-ros replay`: the node's pipeline over real rosbag2 files, the output bag, the report and labels."""

import json
import os

import cv2
import numpy as np
import pytest
from conftest import VIDEOS, need

from fer_ros.bags import bagio
from fer_ros.bags.bagtools import image_message, write_image_bag
from fer_ros.bags.labels import FACE, NO_FACE, read_labels, score
from fer_ros.bags.replay import replay, resolve_topic
from fer_ros.cli import main
from fer_ros.config import load_config
from fer_ros.errors import BagError, DataError
from fer_ros.ros import messages
from fer_ros.ros.node_logic import NodeConfig
from fer_ros.vision.video import Video

pytest.importorskip("rosbags", reason="replay needs rosbags (pip install 'fer_ros[bag]')")

START = 1_700_000_000.5


@pytest.fixture(scope="module")
def model(onnx_model):  # the session's test model: the shipped one, else a random ARCH-1
    return str(onnx_model)


def blank_frames(n=6, fps=10.0):
    """Face-free frames (smooth ramps)."""
    y, x = np.mgrid[0:120, 0:160]
    return [(i / fps, np.clip(np.stack([x, y, x + y], -1) + 5 * i, 0, 255).astype(np.uint8)) for i in range(n)]


def read_topic(path, topic, distro):
    store = messages.rosbags_typestore(distro)
    with bagio.BagReader(path) as bag:
        msgtype = bag.topics[topic].msgtype
        return [(m.timestamp, store.deserialize_cdr(m.data, msgtype)) for m in bag.messages(topic)]


@pytest.mark.parametrize("storage,distro", [("sqlite3", "humble"), ("mcap", "jazzy")])
def test_output_bag_has_the_node_topics_at_the_input_times(tmp_path, model, storage, distro):
    write_image_bag(tmp_path / "in", blank_frames(), storage=storage, distro=distro, frame_id="cam", start_time=START)
    result = replay(tmp_path / "in", load_config(model=model), NodeConfig(rep155=True), out=tmp_path / "out",
                    namespace="robot", progress=False)
    r = result.report
    assert r["frames"] == {"read": 6, "decoded": 6, "processed": 6, "with_face": 0, "errors": 0}
    assert (r["storage"], r["layout"], r["stopped"]) == (storage, distro, None)
    assert set(r["latency_ms"]) == {"detect", "align", "classify", "track", "total", "read", "decode", "write"}
    assert r["throughput"]["fps"] > 0 and 0 < r["throughput"]["io_share"] < 1
    with bagio.BagReader(tmp_path / "out") as out:
        assert (out.storage, out.layout) == (storage, distro)
        assert {t.name: (t.msgtype, t.count) for t in out.topics.values()} == {
            "/robot/faces": ("fer_ros/msg/FaceEmotionArray", 6),
            "/robot/detections": ("vision_msgs/msg/Detection2DArray", 6),
            "/humans/faces/tracked": ("hri_msgs/msg/IdsList", 6)}
        assert all(t.definition for t in out.topics.values()) == (distro == "jazzy")
    faces = read_topic(tmp_path / "out", "/robot/faces", distro)
    stamps = [round((START + t) * 1e9) for t, _ in blank_frames()]
    assert [ts for ts, _ in faces] == stamps  # receive times of the input images
    assert [bagio.stamp_ns(m.header) for _, m in faces] == stamps and faces[0][1].header.frame_id == "cam"
    assert list(faces[0][1].classes) == r["classes"] and faces[0][1].image_width == 160 and not faces[0][1].faces


def test_labelled_clip_scores_face_detection_and_expressions(tmp_path, model):
    """pyfeat_face_noface.mov: a face in frames 0-71, none in 72-168 (checked by eye); every 4th frame, half size."""
    frames = Video(need(VIDEOS / "pyfeat_face_noface.mov")).frames(step=4, scale=0.5)
    write_image_bag(tmp_path / "in", frames, start_time=START)
    with bagio.BagReader(tmp_path / "in") as bag:
        times = [(m.timestamp - bag.start_ns) / 1e9 for m in bag.messages("/camera/image_raw")]
    boundary = (times[17] + times[18]) / 2  # bag frame 17 is video frame 68, 18 is 72
    (tmp_path / "labels.csv").write_text(f"# face then no face\nstart,end,label\n0,{boundary},Neutral\n"
                                         f"{boundary},1e9,none\n")
    config = load_config(model=model, track_min_hits=1)  # report a face from its first frame
    result = replay(tmp_path / "in", config, out=tmp_path / "out", labels=tmp_path / "labels.csv", progress=False)
    r = result.report
    assert r["frames"]["processed"] == 43 and r["frames"]["with_face"] == 18
    lab = r["labels"]
    assert lab["frames"] == 43 and lab["detection"]["accuracy"] == 1.0
    assert lab["detection"]["per_class"]["face"]["support"] == 18
    # the expression scores are those of the labels the output bag carries
    faces = [m for _, m in read_topic(tmp_path / "out", "/faces", "humble")]
    assert [len(m.faces) for m in faces] == [1] * 18 + [0] * 25
    for kind, field in (("smoothed", "probabilities"), ("raw", "raw_probabilities")):
        hits = [r["classes"][int(np.argmax(getattr(m.faces[0], field)))] == "neutral" for m in faces[:18]]
        assert lab[f"expression_{kind}"]["n"] == 18
        assert lab[f"expression_{kind}"]["accuracy"] == pytest.approx(np.mean(hits))
    assert list(r["tracks"]) == ["1"] and r["tracks"]["1"]["frames"] == 18

    # the node's default track_min_hits=2 reports a new face from its second frame: one frame missed
    result = replay(tmp_path / "in", load_config(model=model), labels=tmp_path / "labels.csv", max_frames=20,
                    progress=False)
    assert result.report["labels"]["detection"]["confusion"] == [[2, 0], [1, 17]]


def test_bad_messages_are_reported_with_their_position_and_skipped(tmp_path, model):
    store = bagio.typestore("humble")
    with bagio.BagWriter(tmp_path / "in", store=store) as bag:
        bag.add_topic("/cam/image", bagio.IMAGE)
        for i, (t, img) in enumerate(blank_frames()):
            ns = round((START + t) * 1e9)
            msg = image_message(store, img, ns, "cam")
            if i == 2:
                msg.encoding = "bgr9"
            if i == 4:
                msg.data = msg.data[:-160]  # one row short
            bag.write("/cam/image", ns, msg)
    result = replay(tmp_path / "in", load_config(model=model), out=tmp_path / "out", progress=False)
    r = result.report
    assert r["frames"] == {"read": 6, "decoded": 4, "processed": 4, "with_face": 0, "errors": 2}
    assert [(e["topic"], e["index"]) for e in r["errors"]] == [("/cam/image", 2), ("/cam/image", 4)]
    assert r["errors"][0]["stamp_s"] == pytest.approx(START + 0.2) and "bgr9" in r["errors"][0]["error"]
    assert [ts for ts, _ in read_topic(tmp_path / "out", "/faces", "humble")] == [
        round((START + t) * 1e9) for i, (t, _) in enumerate(blank_frames()) if i not in (2, 4)]


def test_unstamped_images_are_noted(tmp_path, model):
    write_image_bag(tmp_path / "in", [(0.0, img) for _, img in blank_frames(3)], start_time=0.0)
    notes = replay(tmp_path / "in", load_config(model=model), progress=False).report["notes"]
    assert "2 images have a header.stamp not after the previous one" in notes[0]


def test_truncated_bag_reports_what_was_read_before(tmp_path, model):
    write_image_bag(tmp_path / "in", blank_frames(40), start_time=START)
    data = tmp_path / "in" / "in.db3"
    os.truncate(data, data.stat().st_size * 2 // 3)
    result = replay(tmp_path / "in", load_config(model=model), out=tmp_path / "out", progress=False)
    r = result.report
    assert "unreadable after message" in r["stopped"] and "truncated or corrupt" in r["notes"][0]
    assert 10 < r["frames"]["processed"] < 40
    assert len(read_topic(tmp_path / "out", "/faces", "humble")) == r["frames"]["processed"]


def test_topic_choice_errors_list_the_topics(tmp_path, model):
    store = bagio.typestore("humble")
    with bagio.BagWriter(tmp_path / "two", store=store) as bag:
        for topic in ("/left/image_raw", "/right/image_raw"):
            bag.add_topic(topic, bagio.IMAGE)
            bag.write(topic, 1, image_message(store, blank_frames(1)[0][1], 1, "cam"))
    config = load_config(model=model)
    with pytest.raises(BagError, match=r"2 image topics \(/left/image_raw, /right/image_raw\); choose one with"):
        replay(tmp_path / "two", config, progress=False)
    with pytest.raises(BagError, match=r"no topic /cam; it has /left/image_raw \[sensor_msgs/msg/Image\]"):
        replay(tmp_path / "two", config, topic="/cam", progress=False)
    assert replay(tmp_path / "two", config, topic="/right/image_raw", progress=False).report["frames"]["read"] == 1
    with bagio.BagWriter(tmp_path / "none", store=store) as bag:
        bag.add_topic("/camera/camera_info", bagio.CAMERA_INFO)
    with pytest.raises(BagError, match=r"no sensor_msgs/Image or CompressedImage topic; it has /camera/camera_info"):
        replay(tmp_path / "none", config, progress=False)


def test_cli_writes_report_timeline_video_and_output_bag(tmp_path, model, capsys):
    write_image_bag(tmp_path / "in", blank_frames(), compressed=True, storage="mcap", start_time=START)
    (tmp_path / "labels.csv").write_text("frame,label\n0,none\n1,no_face\n5,none\n")
    params = tmp_path / "fer.yaml"
    params.write_text("/**:\n  ros__parameters:\n    confidence_threshold: 0.5\n    faces_topic: emotions\n")
    assert main(["replay", str(tmp_path / "in"), "--config", str(params), "--model", model, "--smoothing-tau", "0.7",
                 "--out", str(tmp_path / "out"), "--out-distro", "jazzy", "--labels", str(tmp_path / "labels.csv"),
                 "--video", str(tmp_path / "v.mp4"), "--report", str(tmp_path / "rep"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "6 read, 6 decoded, 6 processed" in printed and "face detection" in printed
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["config"]["smoothing_tau_s"] == 0.7 and report["config"]["confidence_threshold"] == 0.5
    assert report["labels"]["frames"] == 3 and report["labels"]["detection"]["accuracy"] == 1.0
    assert report["outputs"]["bag"]["topics"] == {"/emotions": 6, "/detections": 6}
    assert cv2.imread(str(tmp_path / "rep" / "timeline.png")).shape[1] > 500
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    with bagio.BagReader(tmp_path / "out") as out:
        assert (out.storage, out.layout) == ("mcap", "jazzy")
    (tmp_path / "bad.csv").write_text("frame,label\n0,contempt\n")
    assert main(["replay", str(tmp_path / "in"), "--model", model, "--labels", str(tmp_path / "bad.csv"),
                 "--report", str(tmp_path / "rep2"), "--no-progress"]) == 2
    assert "bad.csv:2: label 'contempt' is not a class of the model" in capsys.readouterr().err


def test_label_files_parse_and_match(tmp_path):
    def labels(text):
        (tmp_path / "l.csv").write_text(text)
        return read_labels(tmp_path / "l.csv")

    intervals = labels("start,end,label\n0.0,1.5,happy\n1.5,2,none\n3,4,face\n")
    assert [intervals.match(0, 0.0, t) for t in (0.0, 1.49, 1.5, 2.5, 3.2)] == ["happy", "happy", NO_FACE, None, FACE]
    stamps = labels("stamp,label\n100.2,Sadness\n100.1,surprised\n")
    assert [stamps.match(0, s, 0.0) for s in (100.1005, 100.2, 100.15)] == ["surprise", "sad", None]
    assert labels("frame,label\n3,NE\n").match(3, 0.0, 0.0) == "neutral"
    for text, message in (("when,label\n", r"l.csv:1: the header must be one of"),
                          ("frame,label\n1,grumpy\n", r"l.csv:2: unknown label 'grumpy'"),
                          ("start,end,label\n2,1,happy\n", r"l.csv:2: the interval end 1.0 is not after"),
                          ("stamp,label\n1,happy,extra\n", r"l.csv:2: expected 2 columns, got 3"),
                          ("frame,label\nx,happy\n", r"l.csv:2: x is not a frame index"),
                          ("# nothing\n", r"l.csv: no labels")):
        with pytest.raises(DataError, match=message):
            labels(text)
    with pytest.raises(DataError, match="cannot read the labels"):
        read_labels(tmp_path / "missing.csv")


def test_scores_count_a_missed_face_as_a_wrong_expression():
    classes = ("happy", "sad")
    s = score(["happy", "happy", "sad", NO_FACE, FACE], ["happy", None, "happy", None, "sad"],
              ["sad", None, "happy", "sad", "sad"], classes)
    assert s["detection"]["accuracy"] == 0.8  # one face missed
    assert s["expression_smoothed"]["accuracy"] == pytest.approx(1 / 3)
    assert s["expression_smoothed"]["confusion"] == [[1, 0, 1], [1, 0, 0], [0, 0, 0]]
    assert s["expression_raw"]["accuracy"] == 0.0 and s["smoothing_gain"]["accuracy"] == pytest.approx(1 / 3)


def test_topic_names_resolve_like_ros():
    assert [resolve_topic(n, ns) for n, ns in (("faces", "/"), ("faces", "robot"), ("/abs", "/x"),
                                               ("~/dbg", "/r/"))] == ["/faces", "/robot/faces", "/abs",
                                                                      "/r/fer_node/dbg"]


def test_report_names_the_detector_that_ran(tmp_path, model, monkeypatch, capsys):
    """Issue 20: not the configured `auto`, but what ran and why: Haar without a YuNet file, YuNet with one."""
    from conftest import YUNET

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_ROS_YUNET_MODEL", raising=False)
    write_image_bag(tmp_path / "in", blank_frames(2), storage="sqlite3", start_time=START)
    haar = replay(tmp_path / "in", load_config(model=model)).report["detector"]
    assert haar["name"] == "haar" and haar["model"] is None and "fer-ros models fetch" in haar["why"]
    assert "fer-ros replay: face detector haar: no YuNet model file" in capsys.readouterr().err
    yunet = replay(tmp_path / "in", load_config(model=model, detector_model=str(need(YUNET))),
                   progress=False).report["detector"]
    assert yunet == {"name": "yunet", "model": str(YUNET), "why": f"yunet: detector_model {YUNET}"}
