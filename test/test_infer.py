"""`fer-ros infer` on real photos and clips: JSON lines, annotated output, bad sources."""

import json
import shutil

import cv2
import pytest
from conftest import FACES, VIDEOS, YUNET, need

from fer_ros.cli import main


def infer(capsys, *args) -> tuple[int, list[dict], str]:
    code = main(["infer", *map(str, args)])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert not lines or "summary" in lines[-1], "the last line is the summary"
    return code, [line for line in lines if "summary" not in line], err


def test_image_with_save(capsys, tmp_path, onnx_model):
    image = need(FACES / "single_face.jpg")
    saved = tmp_path / "annotated.png"
    code, lines, _ = infer(capsys, image, "--model", onnx_model, "--save", saved)
    assert code == 0 and len(lines) == 1
    line = lines[0]
    assert line["source"] == str(image) and line["frame"] == 0 and len(line["faces"]) == 1
    face = line["faces"][0]
    assert face["id"] == 1 and len(face["box"]) == 4 and 0 <= face["confidence"] <= 1
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert line["latency_ms"]["total"] > 0
    drawn = cv2.imread(str(saved))
    assert drawn.shape == cv2.imread(str(image)).shape and (drawn != cv2.imread(str(image))).any()


def test_folder_keeps_going_past_a_bad_image(capsys, tmp_path, onnx_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("happy_black.jpg", "multi_face.jpg"):
        shutil.copy(need(FACES / name), folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    code, lines, err = infer(capsys, folder, "--model", onnx_model, "--detector", "yunet", "--detector-model",
                             need(YUNET), "--save", out)
    assert code == 1 and "broken.jpg" in err and "1 image(s) could not be read" in err
    assert [len(line["faces"]) for line in lines] == [1, 5], "each image is reported on first sight"
    assert sorted(p.name for p in out.iterdir()) == ["happy_black.jpg", "multi_face.jpg"]


def test_video_stamps_and_mp4(capsys, tmp_path, onnx_model):
    clip = need(VIDEOS / "pyfeat_single_face.mp4")
    saved = tmp_path / "out.mp4"
    code, lines, _ = infer(capsys, clip, "--model", onnx_model, "--max-frames", 6, "--save", saved)
    assert code == 0 and [line["frame"] for line in lines] == list(range(6))
    assert [line["stamp"] for line in lines] == pytest.approx([i / 30 for i in range(6)])
    assert lines[0]["faces"] == [] and all(line["faces"][0]["id"] == 1 for line in lines[1:])
    cap = cv2.VideoCapture(str(saved))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 640


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/photo.jpg"], "/nonexistent/photo.jpg: no such file, folder or camera"),
    (["{tmp}/empty"], "no images"),
    (["{tmp}/fake.mp4"], "fake.mp4: cannot open the video"),
    (["{tmp}/fake.jpg"], "fake.jpg: compressed image"),
    (["{photo}", "--detector", "yunet", "--detector-model", "{tmp}/absent.onnx"], "absent.onnx: no such file"),
    (["{photo}", "--config", "{tmp}/absent.yaml"], "absent.yaml: cannot read"),
])
def test_bad_sources_fail_in_one_line(capsys, tmp_path, onnx_model, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.mp4").write_bytes(b"no video here")
    (tmp_path / "fake.jpg").write_bytes(b"no image here")
    if args[0] == "{photo}":
        need(FACES / "single_face.jpg")
    args = [a.format(tmp=tmp_path, photo=FACES / "single_face.jpg") for a in args]
    code, lines, err = infer(capsys, *args, "--model", onnx_model)
    assert code == 2 and lines == []
    assert err.startswith("fer-ros infer: error:") and message in err and err.count("\n") == 1, err
