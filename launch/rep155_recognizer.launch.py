"""fer_node as the expression recognizer behind a ROS4HRI (REP-155) face detector (hri_face_detect, or
fer_ros's own rep155_detector.launch.py with expression:=false).

    ros2 launch fer_ros rep155_recognizer.launch.py
    ros2 launch fer_ros rep155_recognizer.launch.py image:=cropped model:=ferplus

Follows /humans/faces/tracked, subscribes to each face's /humans/faces/<id>/aligned (or cropped)
image while the face is tracked, and publishes /humans/faces/<id>/expression under the same ids.
"""

from launch.launch_description import LaunchDescription

from fer_ros.ros.launch_presets import preset

#: this file's arguments (passed on to fer.launch.py) and their defaults; empty keeps the parameters file's value
ARGUMENTS = {"namespace": "", "node_name": "fer_recognizer", "image": "aligned", "backend": "", "model": "",
             "device": "", "use_sim_time": "false", "log_level": "info"}


def generate_launch_description() -> LaunchDescription:
    return preset(__file__, ARGUMENTS,
                  ("image", "recognizer_image", "aligned or cropped: the per-face image to classify"),
                  [("mode", "recognizer"), ("debug_image", "false")])
