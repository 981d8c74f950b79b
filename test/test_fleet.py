"""`fer-ros replay` over many bags on a real Dask cluster (2 worker processes on 127.0.0.1, started here):
the fleet report against single-bag replays, a corrupt bag, resuming, and workers killed mid-bag."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, VIDEOS, need

from fer_ros.bags import fleet
from fer_ros.bags.baglist import find_bags, is_fleet, labels_for, unique_names
from fer_ros.bags.bagtools import write_image_bag
from fer_ros.bags.replay import replay
from fer_ros.cli import main
from fer_ros.config import load_config
from fer_ros.errors import BagError
from fer_ros.vision.video import Video

pytest.importorskip("rosbags", reason="replay needs rosbags (pip install 'fer_ros[bag]')")
pytest.importorskip("distributed", reason="a fleet replay needs Dask distributed (pip install 'fer_ros[fleet]')")
import dask  # noqa: E402  (after the skip: dask comes with distributed)

START = 1_700_000_000.0
#: clip -> (every n-th frame, frames in the bag) at half size; face_noface gets labels (face in bag frames 0-17)
CLIPS = {"single_face": ("pyfeat_single_face.mp4", 6, 12), "no_face": ("pyfeat_no_face.mp4", 8, None),
         "face_noface": ("pyfeat_face_noface.mov", 4, 43)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A folder of bags made from ../shared's clips, one with labels beside it, and one corrupt bag."""
    root = tmp_path_factory.mktemp("study")
    for name, (clip, step, _) in CLIPS.items():
        write_image_bag(root / name, Video(need(VIDEOS / clip)).frames(step=step, scale=0.5), start_time=START)
    (root / "face_noface.csv").write_text("frame,label\n" + "".join(
        f"{i},{'Neutral' if i < 18 else 'none'}\n" for i in range(43)))
    (root / "corrupt").mkdir()
    (root / "corrupt" / "corrupt.db3").write_bytes(b"not a bag, " * 500)
    return root


@pytest.fixture(scope="module")
def client():
    """The engine as `fer-ros replay` starts it: a local cluster of 2 single-threaded worker processes."""
    with fleet.engine(workers=2) as c:
        yield c


def test_fleet_report_equals_the_single_bag_reports(study, client, tmp_path, onnx_model, capsys):
    out = tmp_path / "out"
    args = ["replay", str(study), "--out", str(out), "--model", str(onnx_model), "--address",
            client.scheduler.address, "--no-progress"]
    assert main(args) == 1  # the corrupt bag failed
    printed = capsys.readouterr().out
    assert "4 bags: 3 ok, 0 partial (frames skipped or cut short), 1 failed" in printed
    report = json.loads((out / "fleet.json").read_text())
    rows = {r["bag"]: r for r in report["rows"]}
    assert [r["status"] for r in report["rows"]] == ["failed", "ok", "ok", "ok"]  # in name order
    assert "corrupt" in rows["corrupt"]["error"] and not (out / "corrupt").exists()
    config = load_config(model=str(onnx_model))
    for name in CLIPS:
        single = replay(study / name, config, labels=labels_for(study / name, None), progress=False).report
        row, mine = rows[name], json.loads((out / name / "report.json").read_text())
        assert (row["frames"], row["with_face"], row["skipped"]) == (
            single["frames"]["processed"], single["frames"]["with_face"], single["frames"]["errors"])
        assert row["faces"] == sum(int(k) * v for k, v in single["faces_per_frame"]["histogram"].items())
        assert mine["tracks"].keys() == single["tracks"].keys() and mine["frames"] == single["frames"]
        if "labels" in single:
            assert row["accuracy"] == single["labels"]["expression_smoothed"]["accuracy"]
            assert row["macro_f1"] == single["labels"]["expression_smoothed"]["macro_f1"]
        assert (out / name / "bag" / "metadata.yaml").is_file() and (out / name / "timeline.png").is_file()
        assert mine["fleet"]["input"] == fleet.fingerprint(study / name)
        assert mine["fleet"]["input"]["size"] == sum(f.stat().st_size for f in (study / name).iterdir())
    assert rows["face_noface"]["labelled"] == 18 and rows["single_face"]["accuracy"] is None
    assert CLIPS["face_noface"][2] == rows["face_noface"]["frames"] and rows["single_face"]["frames"] == 12
    totals = report["totals"]
    assert totals["frames"] == sum(r["frames"] for r in rows.values()) and totals["accuracy"] == \
        rows["face_noface"]["accuracy"]
    csv_lines = (out / "fleet.csv").read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("bag,status,read,frames") and \
        csv_lines[-1].startswith("total,3 done")
    assert (out / "fleet.png").stat().st_size > 10_000

    # the same command again, the cluster named by Dask's config (DASK_SCHEDULER_ADDRESS) instead of --address:
    # the finished bags are not replayed, the corrupt one is tried again
    stamps = {name: (out / name / "report.json").stat().st_mtime_ns for name in CLIPS}
    with dask.config.set({"scheduler-address": client.scheduler.address}):
        assert main(args[:-3] + ["--no-progress"]) == 1
    again = {r["bag"]: r for r in json.loads((out / "fleet.json").read_text())["rows"]}
    assert all(again[name]["reused"] and again[name]["frames"] == rows[name]["frames"] for name in CLIPS)
    assert stamps == {name: (out / name / "report.json").stat().st_mtime_ns for name in CLIPS}
    assert again["corrupt"]["status"] == "failed" and "3 reused from an earlier run" in capsys.readouterr().out

    # a changed bag is replayed again (its checksum differs); a touched one, the same bytes, is not
    (study / "no_face" / "metadata.yaml").write_text((study / "no_face" / "metadata.yaml").read_text() + "\n")
    os.utime(study / "single_face" / "metadata.yaml")
    assert main(args) == 1
    third = {r["bag"]: r for r in json.loads((out / "fleet.json").read_text())["rows"]}
    assert [n for n in CLIPS if third[n]["reused"]] == ["single_face", "face_noface"]


def kill_workers_replaying(client, folder, times: int, timeout_s: float = 60.0) -> int:
    """SIGKILL the worker process replaying the bag of `folder`, each time one starts it (a line in its
    attempts.log), `times` times; returns the kills made."""
    kills, deadline = 0, time.monotonic() + timeout_s
    while kills < times and time.monotonic() < deadline:
        log = folder / fleet.ATTEMPTS
        started = len(log.read_text().splitlines()) if log.is_file() else 0
        running = [w for w, keys in client.processing().items()
                   if any(k.startswith(f"fer-ros-replay-{folder.name}-") for k in keys)]
        if started > kills and running:
            os.kill(client.run(os.getpid, workers=running)[running[0]], signal.SIGKILL)
            kills += 1
            while running[0] in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.02)  # until the scheduler has seen that worker go
        time.sleep(0.02)
    return kills


@pytest.mark.parametrize("kills,status", [(1, "ok"), (2, "failed")])
def test_a_bag_whose_worker_dies_is_retried_once(study, client, tmp_path, onnx_model, kills, status):
    client.wait_for_workers(2, timeout=60)
    jobs = fleet.make_jobs([study / "face_noface"], tmp_path, {"model": str(onnx_model)}, {})
    done = []
    run = threading.Thread(target=lambda: done.append(fleet.replay_fleet(client, jobs, progress=False)))
    run.start()
    assert kill_workers_replaying(client, tmp_path / "face_noface", kills) == kills
    run.join(120)
    (row,), interrupted = done[0]
    assert (row["status"], row["attempts"], interrupted) == (status, 2, False)
    if status == "ok":  # the second attempt started afresh and finished the bag
        assert row["frames"] == 43 and row["accuracy"] is not None
        assert not (tmp_path / "face_noface" / fleet.ATTEMPTS).exists()
    else:
        assert "its worker died while replaying it, 2 times" in row["error"]


def test_ctrl_c_keeps_the_finished_bags_and_a_rerun_does_the_rest(tmp_path, client, onnx_model):
    frames = list(Video(need(VIDEOS / "pyfeat_face_noface.mov")).frames(step=3, scale=0.5))
    for i in range(4):
        write_image_bag(tmp_path / "in" / f"bag{i}", frames, start_time=START)
    args = ["replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(onnx_model)]
    run = subprocess.Popen([sys.executable, "-m", "fer_ros", *args, "--workers", "2", "--no-progress"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob("*/report.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C in a terminal does: the command and its workers
    printed = run.communicate(timeout=60)[0].decode()
    assert run.returncode == 1 and "interrupted: " in printed and "run the same command again" in printed
    rows = json.loads((tmp_path / "out" / "fleet.json").read_text())["rows"]
    assert {r["status"] for r in rows} <= {"ok", "not run"} and "not run" in [r["status"] for r in rows]
    kept = sorted(p.parent.name for p in (tmp_path / "out").glob("*/report.json")
                  if json.loads(p.read_text())["fleet"]["row"]["status"] == "ok")  # finished, if not yet reported
    assert kept and len(kept) < 4
    assert main([*args, "--address", client.scheduler.address, "--no-progress"]) == 0
    rows = json.loads((tmp_path / "out" / "fleet.json").read_text())["rows"]
    assert [r["bag"] for r in rows if r["reused"]] == kept and all(r["status"] == "ok" for r in rows)


def test_bags_are_found_by_path_glob_folder_and_list(study, tmp_path):
    names = sorted(CLIPS) + ["corrupt"]
    assert [b.name for b in find_bags([str(study)])] == sorted(names)
    assert [b.name for b in find_bags([str(study / "*face*")])] == ["face_noface", "no_face", "single_face"]
    (tmp_path / "list.txt").write_text(f"# my study\n{study / 'no_face'}\n\n{study / 'single_face'}\n"
                                       f"{study / 'no_face'}\n")
    assert [b.name for b in find_bags([str(tmp_path / "list.txt")])] == ["no_face", "single_face"]
    assert not is_fleet([str(study / "no_face")]) and is_fleet([str(study)]) and is_fleet(["a", "b"])
    assert is_fleet([str(tmp_path / "list.txt")]) and is_fleet([str(study / "*")])
    assert labels_for(study / "face_noface", None) == study / "face_noface.csv"
    assert labels_for(study / "no_face", None) is None and labels_for(study / "face_noface", tmp_path) is None
    assert unique_names([study / "a", tmp_path / "a", study / "b"])[1:] != ["a", "b"]
    for arg, message in ((str(tmp_path / "nothing*"), "the pattern matches no bags"),
                         (str(tmp_path), "a folder that holds no bags"),
                         (str(tmp_path / "missing"), "no such bag, folder or list")):
        with pytest.raises(BagError, match=message):
            find_bags([arg])


def test_without_the_engine_several_bags_say_what_to_install(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    assert main(["replay", str(study / "no_face"), str(study / "single_face"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("fer-ros replay: error: replaying several bags needs Dask distributed, which is not installed: "
                   "pip install 'fer_ros[fleet]' (one bag at a time needs nothing more)")


def test_fleet_options_are_checked_before_any_work(study, tmp_path, capsys):
    for extra, words in ((["--report", str(tmp_path / "r")], "--report"), ([], "several bags need --out DIR"),
                         (["--out", str(tmp_path / "o"), "--labels", str(study / "face_noface.csv")],
                          "give a folder of <bag name>.csv files")):
        assert main(["replay", str(study), *extra]) == 2
        assert words in capsys.readouterr().err


def test_a_bad_model_stops_the_fleet_before_any_bag(study, tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    out = tmp_path / "out"
    assert main(["replay", str(study), "--out", str(out), "--model", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken) in err
    assert not out.exists()  # nothing was started
