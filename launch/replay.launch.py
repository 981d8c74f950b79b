"""Replay a rosbag2 into fer_node on simulated time (`ros2 bag play --clock`).

    ros2 launch fer_ros replay.launch.py bag:=/data/session1 image_topic:=/camera/image_raw
    ros2 launch fer_ros replay.launch.py bag:=/data/session1 image_topic:=/camera/image_raw rate:=0.5 loop:=true

The node runs with use_sim_time, so its latencies, throttling and diagnostics follow the bag's
clock; the launch ends when the bag has been played (unless loop:=true). Record the results with
e.g. `ros2 bag record /faces /detections` beside it.
"""

import sys

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from fer_ros.ros.node_logic import unknown_launch_arguments

#: arguments passed through to fer.launch.py, with its defaults (config's default is set below)
PASSED = {"namespace": "", "node_name": "fer_node", "mode": "", "image_topic": "", "transport": "", "rep155": "",
          "rep155_expression": "", "recognizer_image": "", "detector": "", "detector_model": "", "backend": "",
          "model": "", "device": "", "debug_image": "", "listener": "false", "log_level": "info"}
#: this file's own arguments
OWN = ("bag", "rate", "loop", "clock_hz", "start_delay", "config")


def _play(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    reason = unknown_launch_arguments(__file__, sys.argv, [*OWN, *PASSED])
    if reason:
        raise ValueError(reason)
    loop = arg("loop").lower() in ("true", "1")
    cmd = ["ros2", "bag", "play", arg("bag"), "--clock", arg("clock_hz"), "--rate", arg("rate")]
    play = ExecuteProcess(cmd=cmd + (["--loop"] if loop else []), output="screen", name="bag_play")
    actions = [TimerAction(period=float(arg("start_delay")), actions=[play])]
    if not loop:
        actions.append(RegisterEventHandler(OnProcessExit(
            target_action=play, on_exit=[EmitEvent(event=Shutdown(reason="the bag has been played"))])))
    return actions


def generate_launch_description() -> LaunchDescription:
    fer = PathJoinSubstitution([FindPackageShare("fer_ros"), "launch", "fer.launch.py"])
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder (or file) to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false", description="play the bag again and again"),
        DeclareLaunchArgument("clock_hz", default_value="100", description="rate of the /clock the bag publishes"),
        DeclareLaunchArgument("start_delay", default_value="3.0",
                              description="seconds to wait before playing, so fer_node has loaded its model"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([FindPackageShare("fer_ros"), "config",
                                                                            "fer.yaml"]),
                              description="ROS 2 parameters file of fer_node"),
        *[DeclareLaunchArgument(name, default_value=default, description="see fer.launch.py")
          for name, default in PASSED.items()],
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(fer),
            launch_arguments=[(name, LaunchConfiguration(name)) for name in ("config", *PASSED)]
            + [("use_sim_time", "true")]),
        OpaqueFunction(function=_play),
    ])
