"""The ROS 2 nodes: the thin rclpy layer (the only module that imports rclpy).

`FerNode` (`ros2 run fer_ros fer_node`) runs the face pipeline on a camera topic; its logic is in
`fer_ros.node_logic` and its messages are built by `fer_ros.messages`, both ROS-free.
`ExpressionListener` (`ros2 run fer_ros expression_listener`) is the example consumer: it logs each
person's dominant emotion, with the hysteresis of `fer_ros.expression_listener`.
"""

import sys
import threading

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from . import messages
from .annotate import annotate
from .errors import FerRosError
from .expression_listener import DominantEmotions, describe
from .node_logic import (
    PARAMETERS,
    FrameStatistics,
    LatestSlot,
    TrackTopics,
    configs_from_parameters,
    diagnostic_level,
    to_config_value,
    validate_parameter,
)
from .pipeline import Pipeline

#: seconds between repeats of the same warning (on the node clock)
THROTTLE_S = 5.0
#: depth of the reliable output topics
QUEUE = 10


def _descriptor(spec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.text, read_only=not spec.dynamic)
    if spec.range and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]),
                                                     step=0.0)]
    elif spec.range and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    if spec.choices:
        d.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return d


def _cv_bridge():
    """cv_bridge's converter and error class, or (None, Exception) where cv_bridge is not installed."""
    try:
        from cv_bridge import CvBridge, CvBridgeError
    except ImportError:
        return None, Exception
    return CvBridge(), CvBridgeError


class FerNode(Node):
    """Camera images in; face expressions, detections, ROS4HRI topics, a debug image and diagnostics out."""

    def __init__(self, **kwargs):
        super().__init__("fer_node", **kwargs)
        for spec in PARAMETERS.values():
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        config, self.settings = configs_from_parameters({n: self.get_parameter(n).value for n in PARAMETERS})
        self.types = messages.rosidl_types()
        self.pipeline = Pipeline(config)  # loads the model once
        self.bridge, self._bridge_error = _cv_bridge()
        self.stats = FrameStatistics()
        self.slot: LatestSlot = LatestSlot()
        self.tracks = TrackTopics()
        self._pipeline_lock = threading.Lock()
        self._expression_pubs = {}
        s, t = self.settings, self.types
        self.faces_pub = self.create_publisher(t["fer_ros/msg/FaceEmotionArray"], s.faces_topic, QUEUE)
        self.detections_pub = self.create_publisher(t["vision_msgs/msg/Detection2DArray"], s.detections_topic, QUEUE)
        self.debug_pub = (self.create_publisher(t["sensor_msgs/msg/Image"], s.debug_image_topic, QUEUE)
                          if s.debug_image else None)
        self.tracked_pub = (self.create_publisher(t["hri_msgs/msg/IdsList"], messages.HRI_TRACKED, QUEUE)
                            if s.rep155 else None)
        self.diagnostics_pub = self.create_publisher(t["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics", QUEUE)
        if s.transport == "compressed":
            self.create_subscription(t["sensor_msgs/msg/CompressedImage"], f"{s.image_topic}/compressed",
                                     self._on_image, qos_profile_sensor_data)
        else:
            self.create_subscription(t["sensor_msgs/msg/Image"], s.image_topic, self._on_image,
                                     qos_profile_sensor_data)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="fer_worker", daemon=True)
        self._worker.start()
        b = self.pipeline.backend
        self.get_logger().info(
            f"model {b.path} on {b.name}, {len(b.classes)} classes; detector {config.detector}; images from "
            f"{self.resolve_topic_name(s.image_topic)} ({s.transport}, "
            f"{'cv_bridge' if self.bridge else 'numpy'} conversion)")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _warn(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S)  # system clock: bag loops rewind /clock

    def _on_image(self, msg) -> None:
        self.stats.on_input(self._now(), self.slot.put(msg))

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {}
        for p in params:
            if p.name not in PARAMETERS:
                continue  # use_sim_time and others are rclpy's
            reason = validate_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[p.name] = to_config_value(p.name, p.value)
        if changes:
            try:
                with self._pipeline_lock:
                    self.pipeline.update_config(**changes)
            except FerRosError as e:
                return SetParametersResult(successful=False, reason=str(e))
            self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    def _work(self) -> None:
        while not self._stop.is_set():
            msg = self.slot.take(timeout=0.5)
            if msg is None:
                continue
            try:
                self._process(msg)
            except FerRosError as e:  # a bad image: skip it
                self.stats.on_failure()
                self._warn(f"frame skipped: {e}")
            except Exception as e:  # a failed frame must never stop the node
                self.stats.on_failure()
                self._warn(f"frame failed ({type(e).__name__}: {e}); skipped")

    def _decode(self, msg):
        if self.bridge is not None:
            try:
                if self.settings.transport == "compressed":
                    return self.bridge.compressed_imgmsg_to_cv2(msg, "bgr8")
                return self.bridge.imgmsg_to_cv2(msg, "bgr8")
            except self._bridge_error:
                pass  # an encoding cv_bridge cannot convert (e.g. uyvy, yuyv): the numpy conversion may
        return messages.bgr_from_msg(msg)

    def _process(self, msg) -> None:
        bgr = self._decode(msg)
        stamp = messages.stamp_seconds(msg.header.stamp)
        with self._pipeline_lock:
            result = self.pipeline.process(bgr, stamp)
            keep = self.pipeline.config.track_max_missed
        header, t = msg.header, self.types
        self.faces_pub.publish(messages.face_array(t, result, header, (bgr.shape[1], bgr.shape[0])))
        self.detections_pub.publish(messages.detections(t, result, header))
        if self.tracked_pub is not None:
            self._publish_rep155(result, header, keep)
        if self.debug_pub is not None and self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(messages.image(t, annotate(bgr, result), header))
        now = self._now()
        self.stats.on_output(now, now - stamp, len(result.faces))

    def _publish_rep155(self, result, header, keep: int) -> None:
        expressions = messages.expressions(self.types, result, header)
        added, removed = self.tracks.update(expressions, keep)
        for fid in removed:
            self.destroy_publisher(self._expression_pubs.pop(fid))
        for fid in added:
            self._expression_pubs[fid] = self.create_publisher(
                self.types["hri_msgs/msg/Expression"], messages.HRI_EXPRESSION.format(fid), QUEUE)
        self.tracked_pub.publish(messages.tracked_ids(self.types, self.tracks.ids, header))
        for fid, msg in expressions.items():
            self._expression_pubs[fid].publish(msg)

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        summary = self.stats.summary(now.nanoseconds * 1e-9)
        level, text = diagnostic_level(summary)
        b, c = self.pipeline.backend, self.pipeline.config
        values = {k: f"{v:.2f}" if isinstance(v, float) else v for k, v in summary.items()}
        values.update(backend=b.name, model=str(b.path), device=c.device, detector=c.detector,
                      conversion="cv_bridge" if self.bridge else "numpy")
        header = self.types["std_msgs/msg/Header"](stamp=now.to_msg(), frame_id="")
        self.diagnostics_pub.publish(messages.diagnostics(
            self.types, header, f"{self.get_name()}: facial expression recognition", self.get_fully_qualified_name(),
            level, text, values))

    def destroy_node(self):
        self._stop.set()
        self.slot.close()
        self._worker.join(timeout=5.0)
        return super().destroy_node()


class ExpressionListener(Node):
    """Example consumer: logs each person's dominant emotion (with hysteresis) from the face array."""

    def __init__(self, **kwargs):
        super().__init__("expression_listener", **kwargs)
        enter = self.declare_parameter("enter", 0.5).value
        leave = self.declare_parameter("leave", 0.3).value
        margin = self.declare_parameter("margin", 0.1).value
        hold_s = self.declare_parameter("hold_s", 0.5).value
        self.emotions = DominantEmotions(enter, leave, margin, hold_s)
        types = messages.rosidl_types()
        self.create_subscription(types["fer_ros/msg/FaceEmotionArray"], "faces", self._on_faces, QUEUE)

    def _on_faces(self, msg) -> None:
        faces = {f.track_id: dict(zip(msg.classes, f.probabilities, strict=True)) for f in msg.faces
                 if len(msg.classes) and len(f.probabilities) == len(msg.classes)}
        if len(faces) < len(msg.faces):
            self.get_logger().warning("faces whose probabilities do not match the class names were skipped",
                                      throttle_duration_sec=5.0)
        for change in self.emotions.update(messages.stamp_seconds(msg.header.stamp), faces):
            self.get_logger().info(describe(change))


def _spin(name: str, make_node, args=None) -> int:
    rclpy.init(args=args)
    try:
        node = make_node()
    except (FerRosError, ParameterException, NameValidationException, ImportError, ValueError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        rclpy.shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def main(args=None) -> int:
    """Entry point of `ros2 run fer_ros fer_node`."""
    return _spin("fer_node", FerNode, args)


def listener_main(args=None) -> int:
    """Entry point of `ros2 run fer_ros expression_listener`."""
    return _spin("expression_listener", ExpressionListener, args)


if __name__ == "__main__":
    sys.exit(main())
