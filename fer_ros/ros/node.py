"""The ROS 2 nodes: the thin rclpy layer (the only module that imports rclpy).

`FerNode` (`ros2 run fer_ros fer_node`) runs the face pipeline on a camera topic; its logic is in
`fer_ros.ros.node_logic` and its messages are built by `fer_ros.ros.messages`, both ROS-free.
`ExpressionListener` (`ros2 run fer_ros expression_listener`) is the example consumer: it logs each
person's dominant emotion, with the hysteresis of `fer_ros.ros.expression_listener`.
"""

import dataclasses
import signal
import sys
import threading

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription

from ..errors import FerRosError
from ..inference import load_backend
from ..pipeline import Pipeline
from ..vision.annotate import annotate
from . import messages
from .expression_listener import DominantEmotions, describe
from .node_logic import (
    COUNTERS,
    PARAMETERS,
    FaceRecognizer,
    FrameStatistics,
    LatestPerKey,
    LatestSlot,
    TrackTopics,
    TransportLoss,
    configs_from_parameters,
    diagnostic_level,
    to_config_value,
    validate_parameter,
)

#: seconds between repeats of the same warning (on the node clock)
THROTTLE_S = 5.0
#: depth of the reliable output topics
QUEUE = 10
#: rclpy passes a two-argument subscription callback the message info, with the publication sequence
#: numbers (rclpy of Iron, Jazzy and later; Humble's calls every callback with the message alone)
MESSAGE_INFO = hasattr(Subscription, "CallbackType")


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
    """Camera images in; face expressions, detections, ROS4HRI topics, a debug image and diagnostics out.

    mode "detector" (default) runs the face pipeline on a camera topic; mode "recognizer" classifies the
    faces another ROS4HRI face detector publishes. One worker thread does the work, so the executor
    thread only queues messages (the newest per input) and publishes diagnostics.
    """

    def __init__(self, **kwargs):
        super().__init__("fer_node", **kwargs)
        for spec in PARAMETERS.values():
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        config, self.settings = configs_from_parameters({n: self.get_parameter(n).value for n in PARAMETERS})
        self.types = messages.rosidl_types()
        self.bridge, self._bridge_error = _cv_bridge()
        self.stats = FrameStatistics()
        self.loss = TransportLoss()
        self._lock = threading.Lock()  # the pipeline / recognizer and the per-face publishers
        self._stop = threading.Event()
        s, t = self.settings, self.types
        self.recognizing = s.mode == "recognizer"
        self.diagnostics_pub = self.create_publisher(t["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics", QUEUE)
        if self.recognizing:
            self._init_recognizer(config)
        else:
            self._init_detector(config)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="fer_worker", daemon=True)
        self._worker.start()
        b = self.backend
        what = (f"faces from {messages.HRI_TRACKED} and /humans/faces/<id>/{s.recognizer_image}" if self.recognizing
                else f"{self.pipeline.detector_note}; images from {self.resolve_topic_name(s.image_topic)} "
                     f"({s.transport})" + (", publishing REP-155 face topics" if s.rep155 else ""))
        loss = ("counted where the rmw numbers messages" if MESSAGE_INFO
                else "not known (this rclpy passes no message info)")
        self.get_logger().info(f"{s.mode} mode: model {b.path} on {b.name}, {len(b.classes)} classes; {what}; "
                               f"{'cv_bridge' if self.bridge else 'numpy'} conversion; transport loss {loss}")

    # --- set-up ----------------------------------------------------------------------------------------------

    def _init_detector(self, config) -> None:
        s, t = self.settings, self.types
        self.pipeline = Pipeline(config)  # loads the model once
        self.backend = self.pipeline.backend
        self.slot: LatestSlot = LatestSlot()
        self.tracks = TrackTopics()
        self._face_pubs: dict[str, dict] = {}  # ROS4HRI id -> sub-topic -> publisher
        self.faces_pub = self.create_publisher(t["fer_ros/msg/FaceEmotionArray"], s.faces_topic, QUEUE)
        self.detections_pub = self.create_publisher(t["vision_msgs/msg/Detection2DArray"], s.detections_topic, QUEUE)
        self.debug_pub = (self.create_publisher(t["sensor_msgs/msg/Image"], s.debug_image_topic, QUEUE)
                          if s.debug_image else None)
        self.tracked_pub = (self.create_publisher(t["hri_msgs/msg/IdsList"], messages.HRI_TRACKED, QUEUE)
                            if s.rep155 else None)
        if s.transport == "compressed":
            self._subscribe(t["sensor_msgs/msg/CompressedImage"], f"{s.image_topic}/compressed", self._on_image)
        else:
            self._subscribe(t["sensor_msgs/msg/Image"], s.image_topic, self._on_image)

    def _init_recognizer(self, config) -> None:
        self.config = config
        self.backend = load_backend(config.model, config.backend, config.device)  # loads the model once
        self.recognizer = FaceRecognizer(self.backend, config)
        self.inbox: LatestPerKey = LatestPerKey()
        self._faces: dict[str, tuple] = {}  # upstream face id -> (image subscription, expression publisher, topic)
        self._bad_ids: set[str] = set()
        self.create_subscription(self.types["hri_msgs/msg/IdsList"], messages.HRI_TRACKED, self._on_tracked, QUEUE)

    def _subscribe(self, msg_type, topic: str, handler):
        """A sensor-data subscription calling handler(msg, publication sequence number or None, subscription)."""
        box = []
        if MESSAGE_INFO:
            def callback(msg, info):
                handler(msg, _sequence(info), box[0])
        else:
            def callback(msg):
                handler(msg, None, box[0])
        box.append(self.create_subscription(msg_type, topic, callback, qos_profile_sensor_data))
        return box[0]

    def _count_loss(self, subscription, sequence) -> None:
        if sequence is None:
            self.loss.observe(None, None)
            return
        topic = subscription.topic_name  # resolved and remapped
        try:
            publishers = self.count_publishers(topic)
        except Exception:  # noqa: BLE001 - the graph may be gone at shutdown
            publishers = 1
        self.loss.observe(topic, sequence, publishers)

    # --- inputs (executor thread) ------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _warn(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S)  # system clock: bag loops rewind /clock

    def _on_image(self, msg, sequence, subscription) -> None:
        self._count_loss(subscription, sequence)
        self.stats.on_input(self._now(), self.slot.put(msg))

    def _on_face_image(self, face_id: str, msg, sequence, subscription) -> None:
        self._count_loss(subscription, sequence)
        self.stats.on_input(self._now(), self.inbox.put(face_id, msg))

    def _on_tracked(self, msg) -> None:
        """Subscribe to the image of each face that appears in the upstream list, drop those that left it."""
        ids = set(msg.ids)
        with self._lock:
            for fid in sorted(set(self._faces) - ids):
                sub, pub, _ = self._faces.pop(fid)
                self.loss.forget(sub.topic_name)
                self.destroy_subscription(sub)
                self.destroy_publisher(pub)
                self.inbox.discard(fid)
                self.recognizer.forget(fid)
            for fid in sorted(ids - set(self._faces) - self._bad_ids):
                topic = messages.HRI_FACE.format(fid, self.settings.recognizer_image)
                try:
                    pub = self.create_publisher(self.types["hri_msgs/msg/Expression"],
                                                messages.HRI_EXPRESSION.format(fid), QUEUE)
                except (NameValidationException, ValueError) as e:
                    self._bad_ids.add(fid)
                    self._warn(f"face id {fid!r} of {messages.HRI_TRACKED} is not a valid topic name token: "
                               f"ignored ({e})")
                    continue
                sub = self._subscribe(self.types["sensor_msgs/msg/Image"], topic,
                                      lambda m, q, sub_, fid=fid: self._on_face_image(fid, m, q, sub_))
                self._faces[fid] = (sub, pub, topic)

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
                with self._lock:
                    if self.recognizing:
                        self.config = dataclasses.replace(self.config, **changes)
                        self.recognizer.config = self.config
                    else:
                        self.pipeline.update_config(**changes)
            except FerRosError as e:
                return SetParametersResult(successful=False, reason=str(e))
            self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # --- the worker thread -------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                if self.recognizing:
                    self._recognize(self.inbox.take(timeout=0.5))
                else:
                    msg = self.slot.take(timeout=0.5)
                    if msg is not None:
                        self._process(msg)
            except Exception as e:  # a failed frame must never stop the node
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: the publishers may be gone already
                self.stats.on_failure()
                if isinstance(e, FerRosError):  # a bad image: skip it
                    self._warn(f"frame skipped: {e}")
                else:
                    self._warn(f"frame failed ({type(e).__name__}: {e}); skipped")

    def _decode(self, msg):
        if self.bridge is not None:
            try:
                if hasattr(msg, "format"):
                    return self.bridge.compressed_imgmsg_to_cv2(msg, "bgr8")
                return self.bridge.imgmsg_to_cv2(msg, "bgr8")
            except self._bridge_error:
                pass  # an encoding cv_bridge cannot convert (e.g. uyvy, yuyv): the numpy conversion may
        return messages.bgr_from_msg(msg)

    def _process(self, msg) -> None:
        bgr = self._decode(msg)
        stamp = messages.stamp_seconds(msg.header.stamp)
        with self._lock:
            result = self.pipeline.process(bgr, stamp)
            keep = self.pipeline.config.track_max_missed
        if self._stop.is_set():
            return
        header, t = msg.header, self.types
        size = (bgr.shape[1], bgr.shape[0])
        self.faces_pub.publish(messages.face_array(t, result, header, size))
        self.detections_pub.publish(messages.detections(t, result, header))
        if self.tracked_pub is not None:
            self._publish_rep155(bgr, result, header, keep)
        if self.debug_pub is not None and self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(messages.image(t, annotate(bgr, result), header))
        now = self._now()
        self.stats.on_output(now, now - stamp, len(result.faces))

    def _publish_rep155(self, bgr, result, header, keep: int) -> None:
        """The ROS4HRI face detector's topics: tracked ids; per face roi, landmarks, cropped, aligned, expression."""
        s, t = self.settings, self.types
        faces = {messages.face_id(f.track_id): f for f in result.faces}
        added, removed = self.tracks.update(faces, keep)
        for fid in removed:
            for pub in self._face_pubs.pop(fid).values():
                self.destroy_publisher(pub)
        for fid in added:
            kinds = {"roi": "hri_msgs/msg/NormalizedRegionOfInterest2D", "landmarks": "hri_msgs/msg/FacialLandmarks",
                     "cropped": "sensor_msgs/msg/Image", "aligned": "sensor_msgs/msg/Image"}
            if s.rep155_expression:
                kinds["expression"] = "hri_msgs/msg/Expression"
            self._face_pubs[fid] = {name: self.create_publisher(t[kind], messages.HRI_FACE.format(fid, name), QUEUE)
                                    for name, kind in kinds.items()}
        self.tracked_pub.publish(messages.tracked_ids(t, self.tracks.ids, header))
        size = (bgr.shape[1], bgr.shape[0])
        for fid, f in faces.items():
            pubs = self._face_pubs[fid]
            pubs["roi"].publish(messages.roi(t, f.box, f.score, size, header))
            carried = bool(getattr(f, "carried", False))
            marks = None if carried else messages.facial_landmarks(t, f.landmarks, f.score, size, header)
            if marks is not None:  # where the detector measured them in this frame
                pubs["landmarks"].publish(marks)
            if pubs["cropped"].get_subscription_count() > 0:
                pubs["cropped"].publish(messages.image(t, messages.cropped_face(bgr, f.box, s.face_image_size),
                                                       header))
            if pubs["aligned"].get_subscription_count() > 0:
                pubs["aligned"].publish(messages.image(t, messages.aligned_face(bgr, f, s.face_image_size), header))
            if "expression" in pubs:
                pubs["expression"].publish(messages.expression(t, result.classes, f.probs, f.label, f.confidence,
                                                               header))

    def _recognize(self, pending) -> None:
        if not pending:
            return
        images, headers = {}, {}
        for fid, msg in pending.items():
            try:
                images[fid] = (self._decode(msg), messages.stamp_seconds(msg.header.stamp))
                headers[fid] = msg.header
            except FerRosError as e:
                self.stats.on_failure()
                self._warn(f"face {fid}: image skipped: {e}")
        with self._lock:
            recognitions = self.recognizer.classify(images)
            if self._stop.is_set():
                return
            now = self._now()
            for r in recognitions:
                face = self._faces.get(r.face_id)
                if face is None:  # left the tracked list meanwhile
                    continue
                face[1].publish(messages.expression(self.types, self.recognizer.classes, r.probs, r.label,
                                                    r.confidence, headers[r.face_id]))
                self.stats.on_output(now, now - r.stamp, 1)

    # --- diagnostics and shutdown ------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        summary = self.stats.summary(now.nanoseconds * 1e-9)
        summary["frames_lost_in_transport"] = self.loss.value()
        level, text = diagnostic_level(summary)
        c = self.config if self.recognizing else self.pipeline.config
        values = {k: f"{v:.2f}" if isinstance(v, float) else v for k, v in summary.items()}
        values.update(mode=self.settings.mode, backend=self.backend.name, model=str(self.backend.path),
                      device=c.device, conversion="cv_bridge" if self.bridge else "numpy")
        if self.recognizing:
            with self._lock:
                values.update(faces_tracked=len(self._faces),
                              input=f"/humans/faces/<id>/{self.settings.recognizer_image}")
        else:
            detector = self.pipeline.detector_info
            values.update(detector=detector["name"], detector_model=detector["model"] or "",
                          detector_why=detector["why"])
        values["counters"] = "; ".join(f"{k}: {v}" for k, v in COUNTERS.items())
        header = self.types["std_msgs/msg/Header"](stamp=now.to_msg(), frame_id="")
        self.diagnostics_pub.publish(messages.diagnostics(
            self.types, header, f"{self.get_name()}: facial expression recognition", self.get_fully_qualified_name(),
            level, text, values))

    def stop(self) -> None:
        """Stop the worker (and so all publishing from it); call before the context shuts down."""
        self._stop.set()
        (self.inbox if self.recognizing else self.slot).close()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)

    def destroy_node(self):
        self.stop()
        return super().destroy_node()


def _sequence(info) -> int | None:
    """The publication sequence number of a message info (a dict in rclpy), None where unknown."""
    value = info.get("publication_sequence_number") if isinstance(info, dict) else \
        getattr(info, "publication_sequence_number", None)
    return None if value is None else int(value)


class ExpressionListener(Node):
    """Example consumer: logs each person's dominant emotion (with hysteresis) from the face array."""

    def __init__(self, **kwargs):
        super().__init__("expression_listener", **kwargs)
        enter = self.declare_parameter("enter", 0.5).value
        leave = self.declare_parameter("leave", 0.3).value
        margin = self.declare_parameter("margin", 0.1).value
        hold_s = self.declare_parameter("hold_s", 0.5).value
        absent_s = self.declare_parameter("absent_s", 1.0).value
        self.emotions = DominantEmotions(enter, leave, margin, hold_s, absent_s)
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


def _spin(name: str, make_node, args=None, stop: threading.Event | None = None) -> int:
    """Run one node until SIGINT or SIGTERM; 0 then, 2 when it cannot start (the reason on stderr).

    rclpy's own signal handler would shut the context down at once, while the node's worker may be
    publishing (RCLError: publisher's context is invalid). So rclpy installs none here; a signal only
    stops the spin loop, then the node stops its worker and is destroyed, and only then the context
    shuts down. `stop`: an event the executable set on a signal while the modules loaded.
    """
    stop = stop if stop is not None else threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if stop.is_set():  # asked to stop while the modules loaded
            return 0
        try:
            node = make_node()
        except (FerRosError, ParameterException, NameValidationException, ImportError, ValueError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)  # a signal is seen within 0.1 s
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if hasattr(node, "stop"):
                node.stop()  # nothing publishes from the worker after this
            executor.remove_node(node)
            node.destroy_node()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if rclpy.ok():
            rclpy.shutdown()


def main(args=None, stop: threading.Event | None = None) -> int:
    """Entry point of `ros2 run fer_ros fer_node`."""
    try:
        return _spin("fer_node", FerNode, args, stop)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed: a clean stop all the same
        return 0


def listener_main(args=None, stop: threading.Event | None = None) -> int:
    """Entry point of `ros2 run fer_ros expression_listener`."""
    try:
        return _spin("expression_listener", ExpressionListener, args, stop)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
