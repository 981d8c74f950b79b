"""The colcon package without ROS: package.xml, CMakeLists.txt, executables, launch files and their docs agree."""

import ast
import os
import re
import sys
from pathlib import Path

import pytest

import fer_ros
from fer_ros.ros import messages
from fer_ros.ros.node_logic import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
CMAKE = (ROOT / "CMakeLists.txt").read_text()
DOCS = (ROOT / "docs" / "ros.md").read_text()


def _package():
    catkin_pkg = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg validates package.xml")
    package = catkin_pkg.parse_package(ROOT / "package.xml")
    package.validate()
    return package


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    names |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names


def _assigned(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} does not assign {name}")


def test_package_xml_is_valid_format_3():
    package = _package()
    assert package.package_format == 3 and package.name == "fer_ros"
    assert re.search(r"project\(fer_ros\)", CMAKE)
    assert package.version == fer_ros.__version__
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]
    assert {"ament_cmake", "rosidl_default_generators"} <= {d.name for d in package.buildtool_depends}


def test_package_xml_declares_every_ros_dependency():
    package = _package()
    run = {d.name for d in package.exec_depends + package.run_depends}
    used = {name.split("/")[0] for name in messages.TYPE_NAMES} - {"fer_ros"}
    ours = {"fer_ros", *sys.stdlib_module_names}
    used |= _imports(ROOT / "fer_ros" / "ros" / "node.py") - ours
    for launch_file in (ROOT / "launch").glob("*.launch.py"):
        used |= _imports(launch_file) - ours
    used |= {"cv_bridge", "ros2bag", "rosidl_default_runtime", "python3-numpy", "python3-opencv", "python3-yaml"}
    # the Haar cascades: Debian/Ubuntu's libopencv-dev recommends opencv-data (no rosdep key of its own)
    used |= {"libopencv-dev"}
    assert used <= run, f"undeclared: {sorted(used - run)}"
    assert {"launch_testing", "launch_testing_ament_cmake"} <= {d.name for d in package.test_depends}


def test_cmake_generates_every_message_and_installs_the_library_after_it():
    declared = re.findall(r'"(msg/\w+\.msg)"', CMAKE)
    assert sorted(declared) == sorted(f"msg/{p.name}" for p in (ROOT / "msg").glob("*.msg"))
    code = "\n".join(line.split("#")[0] for line in CMAKE.splitlines())
    assert "ament_python_install_package" not in code  # would clash with the generated package (#141)
    assert CMAKE.index("rosidl_generate_interfaces(") < CMAKE.index("install(DIRECTORY fer_ros/")
    assert re.search(r"install\(DIRECTORY launch DESTINATION share/\$\{PROJECT_NAME\}\)", CMAKE)
    # the launch files find the parameters at share/fer_ros/config/fer.yaml; the file lives in the package
    assert re.search(r"install\(FILES fer_ros/config/fer\.yaml DESTINATION share/\$\{PROJECT_NAME\}/config\)",
                     CMAKE)
    assert "add_launch_test(test/test_node_launch.py" in CMAKE


def test_executables_exist_and_point_at_node_functions():
    programs = re.search(r"install\(PROGRAMS ([^)]*) DESTINATION lib/\$\{PROJECT_NAME\}\)", CMAKE).group(1).split()
    node_functions = {n.name for n in ast.parse((ROOT / "fer_ros" / "ros" / "node.py").read_text()).body
                      if isinstance(n, ast.FunctionDef)}
    for program in programs:
        path = ROOT / program
        assert path.is_file() and os.access(path, os.X_OK), program
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env python3")
        target = re.search(r"from fer_ros\.ros\.node import (\w+)", text).group(1)
        assert target in node_functions


def test_launch_files_use_known_parameters_and_executables():
    fer = ROOT / "launch" / "fer.launch.py"
    overrides = _assigned(fer, "OVERRIDES")
    assert set(overrides) <= set(PARAMETERS)
    # what users set at launch (issue 13): a mode, REP-155, the detector and its model, the model, the debug image
    assert {"mode", "rep155", "detector", "detector_model", "model", "debug_image"} <= set(overrides)
    fer_arguments = {*overrides, *_assigned(fer, "OTHERS")}
    assert set(_assigned(fer, "DEFAULTS")) == set(_assigned(fer, "OTHERS")) - {"config"}
    replay = ROOT / "launch" / "replay.launch.py"
    assert set(overrides) <= set(_assigned(replay, "PASSED")) <= fer_arguments
    modes = [ROOT / "launch" / f"rep155_{mode}.launch.py" for mode in ("detector", "recognizer")]
    renamed = {"expression", "image"}  # rep155_expression and recognizer_image under a shorter name
    for path in modes:
        assert set(_assigned(path, "ARGUMENTS")) - renamed <= fer_arguments, path.name
    installed = {Path(p).name for p in re.search(r"install\(PROGRAMS ([^)]*) DESTINATION", CMAKE).group(1).split()}
    for path in (fer, replay, *modes):
        text = path.read_text()
        assert set(re.findall(r'executable="(\w+)"', text)) <= installed
        ast.parse(text)


def test_launch_descriptions_build_where_launch_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros (ROS 2) is not installed")
    import importlib.util

    for path in (ROOT / "launch").glob("*.launch.py"):
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities


def test_docs_cover_every_parameter_and_launch_argument():
    for name in PARAMETERS:
        assert f"`{name}`" in DOCS, f"docs/ros.md does not describe parameter {name}"
    fer = ROOT / "launch" / "fer.launch.py"
    names = [*_assigned(fer, "OVERRIDES"), *_assigned(fer, "OTHERS"), "bag", "rate", "loop"]
    for mode in ("detector", "recognizer"):
        names += _assigned(ROOT / "launch" / f"rep155_{mode}.launch.py", "ARGUMENTS")
        assert f"rep155_{mode}.launch.py" in DOCS
    for name in names:
        assert f"`{name}" in DOCS, f"docs/ros.md does not describe launch argument {name}"
    assert "rosidl_python#141" in DOCS or "rosidl_python/issues/141" in DOCS
