"""Start fer_node (and optionally the example expression_listener).

    ros2 launch fer_ros fer.launch.py image_topic:=/camera/image_raw
    ros2 launch fer_ros fer.launch.py namespace:=front config:=/path/to/my_fer.yaml backend:=torch model:=/m/arch1.pt
    ros2 launch fer_ros fer.launch.py rep155:=true detector:=yunet detector_model:=/m/yunet.onnx debug_image:=false

Empty arguments keep the value of the parameters file (config, default: the installed config/fer.yaml).
A value a parameter cannot take, or an argument this file does not have, stops the launch with the
reason, and so does fer_node exiting with an error (the launch then exits non-zero).
"""

import sys
from collections import deque

from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from fer_ros.ros.node_logic import parameter_from_text, unknown_launch_arguments

#: launch arguments that set the fer_node parameter of the same name when not empty
OVERRIDES = {
    "mode": "detector (the node finds the faces in image_topic) or recognizer (classifies the faces of a ROS4HRI "
            "face detector)",
    "image_topic": "input image topic (relative names resolve in the namespace)",
    "transport": "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)",
    "rep155": "true: also publish the ROS4HRI (REP-155) face topics under /humans/faces/",
    "rep155_expression": "false: with rep155, leave /humans/faces/<id>/expression to another recognizer",
    "recognizer_image": "recognizer mode: aligned or cropped, the per-face image to classify",
    "detector": "face detector (see the detector parameter)",
    "detector_model": "face detector model file (YuNet .onnx)",
    "backend": "onnxruntime, torch or tensorrt",
    "model": "model file for the backend (.onnx, .pt, .engine) or a shipped model (fer2013, ferplus)",
    "device": "cpu or cuda[:N]",
    "debug_image": "false: do not offer the annotated debug image",
}
#: the other launch arguments and their defaults (config's is the installed parameters file)
OTHERS = {
    "config": "ROS 2 parameters file of fer_node",
    "namespace": "namespace of the nodes and their topics",
    "node_name": "name of the fer_node node (two in one namespace need different names)",
    "use_sim_time": "use /clock (true when replaying a bag with --clock)",
    "listener": "also start the example expression_listener",
    "log_level": "fer_node log level",
}
DEFAULTS = {"namespace": "", "node_name": "fer_node", "use_sim_time": "false", "listener": "false",
            "log_level": "info"}


def fail_on_error(action, name: str) -> list:
    """Event handlers that stop the launch, with a non-zero exit and the process's last error line, when
    `action` exits with an error while the launch is not shutting down."""
    errors = deque(maxlen=3)

    def on_stderr(event):
        errors.extend(line for line in event.text.decode(errors="replace").splitlines() if line.strip())

    def on_exit(event, context):
        if event.returncode == 0 or context.is_shutdown:
            return None
        said = f": {errors[-1].strip()}" if errors else " (see its output above)"
        raise RuntimeError(f"{name} exited with code {event.returncode}{said}")

    return [RegisterEventHandler(OnProcessIO(target_action=action, on_stderr=on_stderr)),
            RegisterEventHandler(OnProcessExit(target_action=action, on_exit=on_exit))]


def _true(name: str, text: str) -> bool:
    if text.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if text.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name} must be true or false, not {text!r}")


def _nodes(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    reason = unknown_launch_arguments(__file__, sys.argv, [*OVERRIDES, *OTHERS])
    if reason:
        raise ValueError(reason)
    params = {}
    for name in OVERRIDES:
        if arg(name):
            try:
                value = parameter_from_text(name, arg(name))
            except Exception as e:  # ConfigError: the parameter and what is wrong
                raise ValueError(f"launch argument {name}:={arg(name)}: {e}") from None
            params[name] = ParameterValue(value, value_type=str) if isinstance(value, str) else value
    sim_time = _true("use_sim_time", arg("use_sim_time"))
    params["use_sim_time"] = sim_time
    namespace = arg("namespace") or None
    node_name = arg("node_name") or "fer_node"
    fer = Node(package="fer_ros", executable="fer_node", name=node_name, namespace=namespace,
               parameters=[arg("config"), params], output="screen", emulate_tty=True,
               ros_arguments=["--log-level", arg("log_level")])
    actions = [fer, *fail_on_error(fer, node_name)]
    if _true("listener", arg("listener")):
        listener = Node(package="fer_ros", executable="expression_listener", name="expression_listener",
                        namespace=namespace, parameters=[{"use_sim_time": sim_time}], output="screen",
                        emulate_tty=True)
        actions += [listener, *fail_on_error(listener, "expression_listener")]
    return actions


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("fer_ros"), "config", "fer.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=config, description=OTHERS["config"]),
        *[DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: from config)")
          for name, text in OVERRIDES.items()],
        *[DeclareLaunchArgument(name, default_value=default, description=OTHERS[name])
          for name, default in DEFAULTS.items()],
        OpaqueFunction(function=_nodes),
    ])
