"""fer_node as the expression recognizer behind a ROS4HRI (REP-155) face detector (hri_face_detect, or
fer_ros's own rep155_detector.launch.py with expression:=false).

    ros2 launch fer_ros rep155_recognizer.launch.py
    ros2 launch fer_ros rep155_recognizer.launch.py image:=cropped model:=ferplus

Follows /humans/faces/tracked, subscribes to each face's /humans/faces/<id>/aligned (or cropped)
image while the face is tracked, and publishes /humans/faces/<id>/expression under the same ids.
"""

import sys

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from fer_ros.node_logic import unknown_launch_arguments

#: this file's arguments (passed on to fer.launch.py) and their defaults; empty keeps the parameters file's value
ARGUMENTS = {"namespace": "", "node_name": "fer_recognizer", "image": "aligned", "backend": "", "model": "",
             "device": "", "use_sim_time": "false", "log_level": "info"}


def _check(context):
    reason = unknown_launch_arguments(__file__, sys.argv, [*ARGUMENTS, "config"])
    if reason:
        raise ValueError(reason)
    return []


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fer_ros")
    passed = [(n, LaunchConfiguration(n)) for n in ("config", *ARGUMENTS) if n != "image"]
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "fer.yaml"]),
                              description="ROS 2 parameters file of fer_node"),
        *[DeclareLaunchArgument(name, default_value=default, description="see fer.launch.py" if name != "image"
                                else "aligned or cropped: the per-face image to classify")
          for name, default in ARGUMENTS.items()],
        OpaqueFunction(function=_check),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "fer.launch.py"])),
            launch_arguments=passed + [("mode", "recognizer"), ("recognizer_image", LaunchConfiguration("image")),
                                       ("debug_image", "false")]),
    ])
