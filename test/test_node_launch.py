"""fer_node end to end with launch_testing: needs a sourced ROS 2 workspace in which fer_ros is built.

Runs with `colcon test --packages-select fer_ros` (add_launch_test) or `launch_test test/test_node_launch.py`
after `source install/setup.bash`; skips elsewhere. The REP-155 checks need a photo with a face
(../shared/samples/faces, beside the checkout in CI); on a plain clone they skip and say so.
"""

import time
import unittest
from pathlib import Path

import pytest

for _module in ("rclpy", "launch", "launch_ros", "launch_testing", "ament_index_python"):
    pytest.importorskip(_module, reason=f"{_module} (ROS 2) is not installed: the node's launch test needs ROS 2")

import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: E402
from launch.launch_description import LaunchDescription  # noqa: E402

try:
    get_package_share_directory("fer_ros")
    from fer_ros.msg import FaceEmotionArray

    from fer_ros.inference import DEFAULT_MODEL
    from fer_ros.ros import messages
except (PackageNotFoundError, ImportError) as e:
    pytest.skip(f"fer_ros is not built in the sourced workspace ({e}): colcon build, source install/setup.bash",
                allow_module_level=True)
if not DEFAULT_MODEL.is_file():
    pytest.skip(f"no shipped model at {DEFAULT_MODEL}", allow_module_level=True)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

FACE = Path(__file__).resolve().parents[2] / "shared" / "samples" / "faces"
PHOTOS = sorted(FACE.glob("*.jpg")) if FACE.is_dir() else []
NO_FACE = f"no photo with a face in {FACE} (../shared is only beside the checkout in CI and on dev machines)"
STAMP = (1234, 567000000)


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="fer_ros", executable="fer_node", name="fer_node", output="screen",
        parameters=[{"rep155": True, "diagnostics_period_s": 0.5, "track_min_hits": 1}])
    return LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"fer_node": node}


def _image(encoding: str = "bgr8") -> Image:
    bgr = cv2.imread(str(PHOTOS[0])) if PHOTOS else np.full((240, 320, 3), 90, np.uint8)
    msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding=encoding, is_bigendian=0, step=bgr.shape[1] * 3)
    msg.data = bgr.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    msg.header.frame_id = "test_camera"
    return msg


class TestFerNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("fer_node_tester")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _wait(self, topic_type, topic, until, publish=None, timeout=60.0):
        got = []
        sub = self.node.create_subscription(topic_type, topic, got.append, 10)
        pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data) if publish else None
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end and not any(until(m) for m in got):
                if pub:
                    for msg in publish:
                        pub.publish(msg)
                rclpy.spin_once(self.node, timeout_sec=0.2)
        finally:
            self.node.destroy_subscription(sub)
            if pub:
                self.node.destroy_publisher(pub)
        return [m for m in got if until(m)]

    def test_image_in_faces_and_detections_out_with_its_header(self):
        def same_header(m):
            return (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (*STAMP, "test_camera")

        faces = self._wait(FaceEmotionArray, "faces", same_header, publish=[_image()])
        self.assertTrue(faces, "no FaceEmotionArray with the image's header")
        msg = faces[-1]
        self.assertEqual(len(msg.classes), 7)
        self.assertEqual((msg.image_width, msg.image_height), (_image().width, _image().height))
        for face in msg.faces:
            self.assertAlmostEqual(sum(face.probabilities), 1.0, places=3)
            self.assertEqual(len(face.raw_probabilities), 7)
            self.assertIn(face.carried, (True, False))
        self.assertTrue(self._wait(Detection2DArray, "detections", same_header, publish=[_image()]))
        tracked = self._wait(IdsList, "/humans/faces/tracked", same_header, publish=[_image()])
        self.assertTrue(tracked, "no /humans/faces/tracked (REP-155) with the image's header")

    def test_rep155_face_topics(self):
        if not PHOTOS:
            self.skipTest(NO_FACE)

        def same_header(m):
            return (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (*STAMP, "test_camera")

        tracked = self._wait(IdsList, "/humans/faces/tracked", lambda m: same_header(m) and m.ids,
                             publish=[_image()])
        self.assertTrue(tracked, f"no tracked face ids (REP-155) for {PHOTOS[0].name}")
        fid = tracked[-1].ids[0]
        expressions = self._wait(Expression, messages.HRI_EXPRESSION.format(fid), same_header, publish=[_image()])
        self.assertTrue(expressions, f"no hri_msgs/Expression for face {fid}")
        self.assertTrue(0.0 <= expressions[-1].confidence <= 1.0 and -1.0 <= expressions[-1].valence <= 1.0)
        rois = self._wait(NormalizedRegionOfInterest2D, messages.HRI_FACE.format(fid, "roi"), same_header,
                          publish=[_image()])
        self.assertTrue(rois, f"no roi for face {fid}")
        roi = rois[-1]
        self.assertTrue(0.0 <= roi.xmin < roi.xmax <= 1.0 and 0.0 <= roi.ymin < roi.ymax <= 1.0)
        for kind in ("aligned", "cropped"):  # drawn only while someone subscribes: this test does
            images = self._wait(Image, messages.HRI_FACE.format(fid, kind), same_header, publish=[_image()])
            self.assertTrue(images, f"no {kind} image for face {fid}")
            self.assertEqual((images[-1].width, images[-1].height, images[-1].encoding), (128, 128, "bgr8"))

    def test_a_bad_image_is_skipped_not_fatal(self):
        def counted_failure(m):
            return any(kv.key == "frames_failed" and int(kv.value) > 0 for s in m.status for kv in s.values)

        bad = _image(encoding="no_such_encoding")
        self.assertTrue(self._wait(DiagnosticArray, "/diagnostics", counted_failure, publish=[bad]),
                        "the bad image was not counted in frames_failed")
        self.assertTrue(self._wait(FaceEmotionArray, "faces", lambda m: True, publish=[_image()]),
                        "no faces published after the bad image")

    def test_diagnostics(self):
        def ours(m):
            return any("fer_node" in s.name for s in m.status)

        diags = self._wait(DiagnosticArray, "/diagnostics", ours, publish=[_image()])
        self.assertTrue(diags)
        keys = {kv.key for s in diags[-1].status for kv in s.values}
        for key in ("input_rate_hz", "processed_rate_hz", "frames_received", "frames_lost_in_transport",
                    "frames_dropped", "frames_failed", "latency_median_ms", "latency_max_ms", "faces_per_frame",
                    "backend", "model", "mode", "counters"):
            self.assertIn(key, keys)
        values = {kv.key: kv.value for s in diags[-1].status for kv in s.values}
        print(f"frames_lost_in_transport: {values['frames_lost_in_transport']}")

    def test_parameters_are_checked_at_run_time(self):
        client = self.node.create_client(SetParameters, "/fer_node/set_parameters")
        self.assertTrue(client.wait_for_service(timeout_sec=30.0))

        def set_(name, value):
            request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
            future = client.call_async(request)
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=10.0)
            return future.result().results[0]

        self.assertTrue(set_("confidence_threshold", 0.5).successful)
        refused = set_("confidence_threshold", 2.0)
        self.assertFalse(refused.successful)
        self.assertIn("confidence_threshold", refused.reason)
        self.assertFalse(set_("backend", "torch").successful)  # read-only
        self.node.destroy_client(client)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])  # SIGINT: a clean exit
