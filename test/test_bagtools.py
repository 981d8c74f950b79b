"""Bag tools and bag IO on real rosbag2 files written and read with rosbags (no ROS needed)."""

import json
import os
import sqlite3
from contextlib import nullcontext

import cv2
import numpy as np
import pytest
import yaml
from conftest import VIDEOS, need

from fer_ros.bags import bagio
from fer_ros.bags.bagtools import bag_info, camera_info_topic, write_image_bag
from fer_ros.cli import main
from fer_ros.errors import BagError, DataError
from fer_ros.vision.video import Video

pytest.importorskip("rosbags", reason="bag IO needs rosbags (pip install 'fer_ros[bag]')")

START = 1_700_000_000.25


def frames(n=5, w=64, h=48, fps=10.0):
    """(seconds, BGR) smooth colour ramps, brighter with the frame index."""
    y, x = np.mgrid[0:h, 0:w]
    ramp = np.stack([x * 100 / w + y * 50 / h + 30 * c for c in range(3)], axis=-1)
    return [(i / fps, np.clip(ramp + 10 * i, 0, 255).astype(np.uint8)) for i in range(n)]


def read_images(path):
    with bagio.BagReader(path) as bag:
        topic = bag.image_topic()
        out = [(m.timestamp, *bag.decode_image(topic.msgtype, m.data)) for m in bag.messages(topic.name)]
        return bag, topic, out


@pytest.mark.parametrize("storage", bagio.STORAGES)
@pytest.mark.parametrize("distro", bagio.DISTROS)
def test_round_trip_in_every_storage_and_layout(tmp_path, storage, distro):
    src = frames()
    out = tmp_path / "bag"
    assert write_image_bag(out, src, storage=storage, distro=distro, frame_id="cam_optical", start_time=START) == 5
    bag, topic, got = read_images(out)
    assert (bag.storage, bag.layout, topic.name, topic.msgtype, topic.count) == (
        storage, distro, "/camera/image_raw", bagio.IMAGE, 5)
    for (t, img), (ts, bgr, header) in zip(src, got, strict=True):
        ns = round((START + t) * 1e9)
        assert ts == ns and bagio.stamp_ns(header) == ns and header.frame_id == "cam_optical"
        np.testing.assert_array_equal(bgr, img)
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == {"humble": 5, "jazzy": 9}[distro]
    info = bag_info(out)
    # Humble's sqlite3 plugin stores no definitions (its MCAP plugin does); Jazzy stores them
    assert info["definitions"] == (distro == "jazzy" or storage == "mcap")
    if storage == "sqlite3":
        con = sqlite3.connect(out / "bag.db3")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        schema = con.execute("SELECT schema_version FROM schema").fetchone()[0]
        assert schema == (3 if distro == "humble" else 4)
        assert ("message_definitions" in tables) == (distro == "jazzy")


@pytest.mark.parametrize("encoding", ["rgb8", "mono8"])
def test_encodings_and_compressed_images(tmp_path, encoding):
    src = frames(3)
    write_image_bag(tmp_path / "raw", src, encoding=encoding, start_time=START)
    _, _, got = read_images(tmp_path / "raw")
    expect = [img if encoding == "rgb8" else cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
              for _, img in src]
    for (_, bgr, _), want in zip(got, expect, strict=True):
        np.testing.assert_array_equal(bgr, want)

    write_image_bag(tmp_path / "jpeg", src, encoding=encoding, compressed=True, quality=95, start_time=START)
    _, topic, got = read_images(tmp_path / "jpeg")
    assert (topic.name, topic.msgtype) == ("/camera/image_raw/compressed", bagio.COMPRESSED_IMAGE)
    for (_, bgr, _), want in zip(got, expect, strict=True):
        assert bgr.shape == want.shape and np.abs(bgr.astype(int) - want).mean() < 8


def test_camera_info_uncalibrated_and_from_calibration_file(tmp_path):
    write_image_bag(tmp_path / "a", frames(2), camera_info=True, start_time=START)
    calibration = {"image_width": 64, "image_height": 48, "distortion_model": "plumb_bob",
                   "camera_matrix": {"rows": 3, "cols": 3, "data": [50, 0, 32, 0, 50, 24, 0, 0, 1]},
                   "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.1, 0, 0, 0, 0]}}
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(calibration))
    assert main(["bag", "from-images", str(_image_folder(tmp_path)), str(tmp_path / "b"), "--camera-info",
                 str(tmp_path / "cal.yaml"), "--start-time", "10"]) == 1  # _image_folder's 002.png is skipped
    for name, k in (("a", [0.0] * 9), ("b", [50, 0, 32, 0, 50, 24, 0, 0, 1])):
        with bagio.BagReader(tmp_path / name) as bag:
            assert bag.topics["/camera/camera_info"].msgtype == bagio.CAMERA_INFO
            infos = [bag.store.deserialize_cdr(m.data, bagio.CAMERA_INFO) for m in bag.messages("/camera/camera_info")]
        assert len(infos) == 2 and (infos[0].width, infos[0].height) == (64, 48)
        np.testing.assert_allclose(infos[0].k, k)
    assert camera_info_topic("/robot/cam/image_raw/compressed") == "/robot/cam/camera_info"
    with pytest.raises(DataError, match="calibration is for 64x48"):
        write_image_bag(tmp_path / "c", frames(1, w=32), camera_info=calibration)


def _image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (_, img) in enumerate(frames(2)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    (folder / "002.png").write_bytes(b"not a png")  # skipped with a warning
    return folder


def test_from_images_cli_stamps_by_fps_and_skips_unreadable_files(tmp_path, capsys):
    assert main(["bag", "from-images", str(_image_folder(tmp_path)), str(tmp_path / "bag"), "--fps", "4",
                 "--start-time", "100", "--distro", "jazzy", "--frame-id", "head_camera"]) == 1  # 1: one skipped
    out, err = capsys.readouterr()
    assert "002.png: compressed image of 9 bytes could not be decoded" in err and "not a readable image, skipped" in err
    assert "wrote 2 frames; 1 unreadable image(s) skipped" in out
    _, topic, got = read_images(tmp_path / "bag")
    assert [ts for ts, _, _ in got] == [100_000_000_000, 100_250_000_000]
    assert got[0][2].frame_id == "head_camera" and topic.count == 2


def test_from_video_cli_uses_the_video_timestamps(tmp_path, capsys):
    video = need(VIDEOS / "pyfeat_single_face.mp4")
    out = tmp_path / "bag"
    assert main(["bag", "from-video", str(video), str(out), "--step", "3", "--max-frames", "5", "--scale", "0.25",
                 "--compressed", "--storage", "mcap", "--start-time", "0"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 frames" in printed and "/camera/image_raw/compressed" in printed
    _, topic, got = read_images(out)
    stamps = [bagio.stamp_ns(h) / 1e9 for _, _, h in got]
    np.testing.assert_allclose(stamps, [0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)  # 30 fps, every 3rd frame
    assert got[0][1].shape == (90, 160, 3)
    clip = Video(video)
    assert clip.count(step=3) == 24 and len(list(clip.frames(step=3))) == 24


def test_info_cli_table_and_json(tmp_path, capsys):
    write_image_bag(tmp_path / "bag", frames(), distro="jazzy", storage="sqlite3", start_time=START)
    assert main(["bag", "info", str(tmp_path / "bag")]) == 0
    table = capsys.readouterr().out
    assert "jazzy (metadata version 9, message definitions stored)" in table
    assert "/camera/image_raw" in table and "sensor_msgs/msg/Image" in table and "0.400 s" in table
    assert main(["bag", "info", str(tmp_path / "bag" / "bag.db3"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["topics"] == [{"name": "/camera/image_raw", "type": bagio.IMAGE, "count": 5, "definition": True}]
    assert info["version"] is None and info["storage"] == "sqlite3"


def test_bag_without_metadata_yaml_is_read_from_its_storage_file(tmp_path):
    write_image_bag(tmp_path / "bag", frames(), start_time=START)
    (tmp_path / "bag" / "metadata.yaml").unlink()
    bag, topic, got = read_images(tmp_path / "bag")
    assert len(got) == 5 and "no metadata.yaml" in bag.notes[0]


@pytest.mark.parametrize("storage", bagio.STORAGES)
def test_truncated_bag_gives_its_intact_messages(tmp_path, storage):
    # raw 320x240 frames: MCAP closes a chunk every MiB, so a cut leaves complete chunks before it
    write_image_bag(tmp_path / "bag", frames(20, 320, 240), storage=storage, start_time=START)
    data = tmp_path / "bag" / f"bag.{'db3' if storage == 'sqlite3' else 'mcap'}"
    os.truncate(data, data.stat().st_size // 2)
    with bagio.BagReader(tmp_path / "bag") as bag:
        assert "truncated or corrupt" in bag.notes[0]
        topic = bag.image_topic()
        got = []
        # sqlite3 ends with an error naming where it stopped; MCAP ends after its last complete chunk
        stop = (pytest.raises(BagError, match=r"/camera/image_raw unreadable after message \d+ \(t=")
                if storage == "sqlite3" else nullcontext())
        with stop:
            for m in bag.messages(topic.name):
                got.append(bag.decode_image(topic.msgtype, m.data)[0])
    assert 4 <= len(got) <= 10
    np.testing.assert_array_equal(got[3], frames(20, 320, 240)[3][1])


def test_unreadable_inputs_raise_bag_errors(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        bagio.BagReader(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.db3").write_bytes(b"garbage" * 100)
    with pytest.raises(BagError, match="nothing could be recovered"):
        bagio.BagReader(tmp_path / "junk")
    (tmp_path / "mcap").mkdir()
    (tmp_path / "mcap" / "x.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x01" + bytes(20))
    with pytest.raises(BagError, match="nothing could be recovered"):
        bagio.BagReader(tmp_path / "mcap")
    write_image_bag(tmp_path / "bag", frames(1))
    with pytest.raises(BagError, match="exists; remove it"):
        write_image_bag(tmp_path / "bag", frames(1))
    with pytest.raises(DataError, match="cannot open the video"):
        Video(tmp_path / "none.mp4")
    assert main(["bag", "info", str(tmp_path / "junk")]) == 2
    with pytest.raises(SystemExit) as stop:  # argparse refuses it, in one line
        main(["bag", "from-images", str(tmp_path), str(tmp_path / "x"), "--fps", "0"])
    assert stop.value.code == 2
