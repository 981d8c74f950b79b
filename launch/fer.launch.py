"""Start fer_node (and optionally the example expression_listener).

    ros2 launch fer_ros fer.launch.py image_topic:=/camera/image_raw
    ros2 launch fer_ros fer.launch.py namespace:=front config:=/path/to/my_fer.yaml backend:=torch model:=/m/arch1.pt

Empty arguments keep the value of the parameters file (config, default: the installed config/fer.yaml).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

#: launch arguments that override the parameter of the same name when not empty
OVERRIDES = {
    "image_topic": "input image topic (relative names resolve in the namespace)",
    "transport": "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)",
    "backend": "onnxruntime, torch or tensorrt",
    "model": "model file for the backend (.onnx, .pt, .engine)",
    "device": "cpu or cuda[:N]",
}


def _nodes(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    params = {name: ParameterValue(arg(name), value_type=str) for name in OVERRIDES if arg(name)}
    params["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1")
    namespace = arg("namespace") or None
    nodes = [Node(package="fer_ros", executable="fer_node", name="fer_node", namespace=namespace,
                  parameters=[arg("config"), params], output="screen", emulate_tty=True,
                  ros_arguments=["--log-level", arg("log_level")])]
    if arg("listener").lower() in ("true", "1"):
        nodes.append(Node(package="fer_ros", executable="expression_listener", name="expression_listener",
                          namespace=namespace, parameters=[{"use_sim_time": params["use_sim_time"]}],
                          output="screen", emulate_tty=True))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([FindPackageShare("fer_ros"), "config",
                                                                            "fer.yaml"]),
                              description="ROS 2 parameters file of fer_node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes and their topics"),
        *[DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: from config)")
          for name, text in OVERRIDES.items()],
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("listener", default_value="false",
                              description="also start the example expression_listener"),
        DeclareLaunchArgument("log_level", default_value="info", description="fer_node log level"),
        OpaqueFunction(function=_nodes),
    ])
