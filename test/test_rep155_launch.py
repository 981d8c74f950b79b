"""REP-155 both ways, back to back, with launch_testing: fer_node as the ROS4HRI face detector (rep155, no
expression of its own) feeding fer_node in recognizer mode, which classifies each face's aligned image.

Needs a sourced ROS 2 workspace in which fer_ros is built (`colcon test --packages-select fer_ros`, or
`launch_test test/test_rep155_launch.py`), and a photo with a face (../shared/samples/faces): without ROS
it skips; without the photo its test waits until both nodes run, then skips and says why (the nodes must
still exit cleanly when launch_testing stops them).
"""

import time
import unittest
from pathlib import Path

import pytest

for _module in ("rclpy", "launch", "launch_ros", "launch_testing", "ament_index_python"):
    pytest.importorskip(_module, reason=f"{_module} (ROS 2) is not installed: the REP-155 launch test needs ROS 2")

import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402
from launch.launch_description import LaunchDescription  # noqa: E402

try:
    get_package_share_directory("fer_ros")
    from fer_ros.inference import DEFAULT_MODEL
    from fer_ros.ros import messages
except (PackageNotFoundError, ImportError) as e:
    pytest.skip(f"fer_ros is not built in the sourced workspace ({e}): colcon build, source install/setup.bash",
                allow_module_level=True)
if not DEFAULT_MODEL.is_file():
    pytest.skip(f"no shipped model at {DEFAULT_MODEL}", allow_module_level=True)
FACE = Path(__file__).resolve().parents[2] / "shared" / "samples" / "faces"
PHOTOS = sorted(FACE.glob("*.jpg")) if FACE.is_dir() else []
NO_FACE = (f"no photo with a face in {FACE} (../shared is only beside the checkout in CI and on dev machines): "
           "the detector would track nobody")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from hri_msgs.msg import Expression, IdsList  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

STAMP = (4321, 250000000)


@pytest.mark.launch_test
def generate_test_description():
    detector = launch_ros.actions.Node(
        package="fer_ros", executable="fer_node", name="fer_node", output="screen",
        parameters=[{"rep155": True, "rep155_expression": False, "track_min_hits": 1}])
    recognizer = launch_ros.actions.Node(
        package="fer_ros", executable="fer_node", name="fer_recognizer", output="screen",
        parameters=[{"mode": "recognizer", "recognizer_image": "aligned", "diagnostics_period_s": 0.5}])
    return (LaunchDescription([detector, recognizer, launch_testing.actions.ReadyToTest()]),
            {"detector": detector, "recognizer": recognizer})


def _image() -> Image:
    bgr = cv2.imread(str(PHOTOS[0])) if PHOTOS else np.full((240, 320, 3), 90, np.uint8)
    msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", is_bigendian=0, step=bgr.shape[1] * 3)
    msg.data = bgr.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    msg.header.frame_id = "test_camera"
    return msg


class TestDetectorToRecognizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("rep155_tester")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _wait(self, topic_type, topic, until, timeout=60.0):
        got = []
        sub = self.node.create_subscription(topic_type, topic, got.append, 10)
        pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        image, end = _image(), time.monotonic() + timeout
        try:
            while time.monotonic() < end and not any(until(m) for m in got):
                pub.publish(image)
                rclpy.spin_once(self.node, timeout_sec=0.2)
        finally:
            self.node.destroy_subscription(sub)
            self.node.destroy_publisher(pub)
        return [m for m in got if until(m)]

    def _wait_for_nodes(self, names: set[str], timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not names <= set(self.node.get_node_names()):
            rclpy.spin_once(self.node, timeout_sec=0.2)

    def test_recognizer_classifies_the_detectors_faces(self):
        if not PHOTOS:
            # stop the nodes only once they run: a SIGINT while Python itself starts up is not theirs to handle
            self._wait_for_nodes({"fer_node", "fer_recognizer"})
            self.skipTest(NO_FACE)  # a module-level skip would be an error under launch_test (colcon test)

        def same_header(m):
            return (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (*STAMP, "test_camera")

        tracked = self._wait(IdsList, messages.HRI_TRACKED, lambda m: same_header(m) and m.ids)
        self.assertTrue(tracked, f"the detector tracks no face in {PHOTOS[0].name}")
        fid = tracked[-1].ids[0]
        topic = messages.HRI_EXPRESSION.format(fid)
        expressions = self._wait(Expression, topic, same_header)
        self.assertTrue(expressions, f"no hri_msgs/Expression on {topic} from the recognizer")
        e = expressions[-1]
        self.assertTrue(0.0 <= e.confidence <= 1.0 and -1.0 <= e.valence <= 1.0 and -1.0 <= e.arousal <= 1.0)
        publishers = {info.node_name for info in self.node.get_publishers_info_by_topic(topic)}
        self.assertEqual(publishers, {"fer_recognizer"}, "the expression must come from the recognizer alone")
        subscribers = {info.node_name for info in
                       self.node.get_subscriptions_info_by_topic(messages.HRI_FACE.format(fid, "aligned"))}
        self.assertIn("fer_recognizer", subscribers)
        print(f"face {fid}: {e.expression or '(no category)'} valence {e.valence:.2f} arousal {e.arousal:.2f} "
              f"confidence {e.confidence:.2f}")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
