"""fer_node as a ROS4HRI (REP-155) face detector: camera images in, /humans/faces/... out.

    ros2 launch fer_ros rep155_detector.launch.py image_topic:=/camera/image_raw
    ros2 launch fer_ros rep155_detector.launch.py image_topic:=/camera/image_raw expression:=false   # + a recognizer

Publishes /humans/faces/tracked and, per face, roi, landmarks (where the detector gives them), cropped
and aligned images (while someone subscribes) and expression (unless expression:=false, when another
node such as rep155_recognizer.launch.py classifies the faces), besides fer_node's own topics.
"""

from launch.launch_description import LaunchDescription

from fer_ros.ros.launch_presets import preset

#: this file's arguments (passed on to fer.launch.py) and their defaults; empty keeps the parameters file's value
ARGUMENTS = {"namespace": "", "node_name": "fer_node", "image_topic": "", "transport": "", "detector": "",
             "detector_model": "", "backend": "", "model": "", "device": "", "debug_image": "", "expression": "true",
             "use_sim_time": "false", "log_level": "info"}


def generate_launch_description() -> LaunchDescription:
    return preset(__file__, ARGUMENTS,
                  ("expression", "rep155_expression", "false: leave /humans/faces/<id>/expression to another node"),
                  [("mode", "detector"), ("rep155", "true")])
