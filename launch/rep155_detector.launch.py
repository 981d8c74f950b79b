"""fer_node as a ROS4HRI (REP-155) face detector: camera images in, /humans/faces/... out.

    ros2 launch fer_ros rep155_detector.launch.py image_topic:=/camera/image_raw
    ros2 launch fer_ros rep155_detector.launch.py image_topic:=/camera/image_raw expression:=false   # + a recognizer

Publishes /humans/faces/tracked and, per face, roi, landmarks (where the detector gives them), cropped
and aligned images (while someone subscribes) and expression (unless expression:=false, when another
node such as rep155_recognizer.launch.py classifies the faces), besides fer_node's own topics.
"""

import sys

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from fer_ros.node_logic import unknown_launch_arguments

#: this file's arguments (passed on to fer.launch.py) and their defaults; empty keeps the parameters file's value
ARGUMENTS = {"namespace": "", "node_name": "fer_node", "image_topic": "", "transport": "", "detector": "",
             "detector_model": "", "backend": "", "model": "", "device": "", "debug_image": "", "expression": "true",
             "use_sim_time": "false", "log_level": "info"}


def _check(context):
    reason = unknown_launch_arguments(__file__, sys.argv, [*ARGUMENTS, "config"])
    if reason:
        raise ValueError(reason)
    return []


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fer_ros")
    passed = [(n, LaunchConfiguration(n)) for n in ("config", *ARGUMENTS) if n != "expression"]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "fer.yaml"]),
                              description="ROS 2 parameters file of fer_node"),
        *[DeclareLaunchArgument(name, default_value=default, description="see fer.launch.py" if name != "expression"
                                else "false: leave /humans/faces/<id>/expression to another recognizer")
          for name, default in ARGUMENTS.items()],
        OpaqueFunction(function=_check),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "fer.launch.py"])),
            launch_arguments=passed + [("mode", "detector"), ("rep155", "true"),
                                       ("rep155_expression", LaunchConfiguration("expression"))]),
    ])
