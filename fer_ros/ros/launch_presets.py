"""The REP-155 launch files' one job: fer.launch.py with some of its arguments fixed and one renamed.

Imported by launch/rep155_*.launch.py only (it needs ROS 2's launch packages).
"""

import sys

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from .node_logic import unknown_launch_arguments


def preset(launch_file: str, arguments: dict[str, str], renamed: tuple[str, str, str],
           fixed: list[tuple[str, str]]) -> LaunchDescription:
    """fer.launch.py with `arguments` (name -> default) passed on, `renamed` = (this file's name, fer.launch.py's
    name, description) passed on under fer.launch.py's name, and `fixed` (name, value) pairs set; an argument
    `launch_file` does not declare fails the launch."""
    share = FindPackageShare("fer_ros")
    short, full, description = renamed

    passed = [(n, LaunchConfiguration(n)) for n in ("config", *arguments) if n != short]

    def include(context):
        """fer.launch.py, included only when this file runs: `--show-args` then lists this file's own arguments
        (it walks included descriptions, and would list fer.launch.py's, which this file refuses)."""
        reason = unknown_launch_arguments(launch_file, sys.argv, [*arguments, "config"])
        if reason:
            raise ValueError(reason)
        return [IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "fer.launch.py"])),
            launch_arguments=passed + [(full, LaunchConfiguration(short)), *fixed])]

    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "fer.yaml"]),
                              description="ROS 2 parameters file of fer_node"),
        *[DeclareLaunchArgument(name, default_value=default,
                                description=description if name == short else "see fer.launch.py")
          for name, default in arguments.items()],
        OpaqueFunction(function=include),
    ])
