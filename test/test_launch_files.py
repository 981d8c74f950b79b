"""`ros2 launch` of the installed launch files, as a user runs them: a bad or unknown argument and a fer_node
that dies at start-up stop the launch with the reason and a non-zero exit.

Needs the ros2 command and fer_ros built in the sourced workspace (`colcon test` runs it); skips elsewhere.
"""

import os
import shutil
import subprocess

import pytest

pytest.importorskip("launch_ros", reason="launch_ros (ROS 2) is not installed")
if shutil.which("ros2") is None:
    pytest.skip("the ros2 command is not on PATH (source a ROS 2 workspace)", allow_module_level=True)
try:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    get_package_share_directory("fer_ros")
except (ImportError, PackageNotFoundError) as e:
    pytest.skip(f"fer_ros is not built in the sourced workspace ({e})", allow_module_level=True)


def _launch(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(["ros2", "launch", "fer_ros", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def test_show_args_lists_what_users_set():
    out = _launch("fer.launch.py", "--show-args", timeout=60).stdout
    for name in ("rep155", "detector", "detector_model", "model", "debug_image", "mode", "node_name"):
        assert f"'{name}'" in out, name


@pytest.mark.parametrize("launch_file", ["rep155_detector.launch.py", "rep155_recognizer.launch.py"])
def test_show_args_of_a_preset_lists_only_what_it_accepts(launch_file):
    import importlib.util

    spec = importlib.util.spec_from_file_location("preset", os.path.join(
        get_package_share_directory("fer_ros"), "launch", launch_file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = _launch(launch_file, "--show-args", timeout=60).stdout
    listed = {line.strip().strip("'").split("'")[0] for line in out.splitlines() if line.startswith("    '")}
    assert listed == {"config", *module.ARGUMENTS}, out


@pytest.mark.parametrize("args,words", [
    (["rep15:=true"], "unknown launch argument 'rep15' (did you mean 'rep155'?)"),
    (["rep155:=maybe"], "launch argument rep155:=maybe: rep155 must be bool"),
    (["mode:=tracker"], "mode must be one of detector, recognizer"),
])
def test_bad_arguments_stop_the_launch(args, words):
    run = _launch("fer.launch.py", *args)
    assert run.returncode != 0, run.stdout + run.stderr
    assert words in run.stdout + run.stderr


def test_mode_launch_files_check_their_arguments():
    run = _launch("rep155_recognizer.launch.py", "image_topic:=/camera/image_raw")
    assert run.returncode != 0 and "unknown launch argument 'image_topic'" in run.stdout + run.stderr


def test_a_node_that_dies_at_start_up_fails_the_launch(tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    run = _launch("fer.launch.py", f"model:={missing}")
    text = run.stdout + run.stderr
    assert run.returncode != 0, text
    assert "fer_node exited with code 2" in text and "no_such_model.onnx" in text, text
