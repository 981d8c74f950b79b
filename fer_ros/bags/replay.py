"""`fer-ros replay BAG`: run the node's pipeline over a rosbag2 in bag time, without ROS.

The same `Pipeline` and parameters as the node (a parameters file plus overrides) process every
frame of the image topic, smoothing over the message header stamps, so results do not depend on
the machine's speed. The node's output topics can be written to a bag with the input's receive
times and headers (`ros2 bag play` of it looks like the live node); the report gives frame and face
counts, per-stage latency and throughput, per-track timelines, and, with a label file, accuracy
and macro-F1 of the smoothed and the raw labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..cli import atomic_output, check_output, number, removed_on_failure
from ..config import PipelineConfig, overrides_from, read_parameters
from ..config import add_arguments as config_arguments
from ..errors import BagError, DataError, FerRosError, FerRosWarning, ImageError
from ..metrics import format_report
from ..pipeline import FrameResult, Pipeline
from ..ros import messages
from ..ros.node_logic import NodeConfig, TrackTopics, configs_from_parameters
from ..vision.annotate import annotate
from ..vision.encodings import opencv_path
from . import bagio
from .labels import Labels, read_labels, score

#: stages timed besides the pipeline's own (detect, align, classify, track, total)
IO_STAGES = ("read", "decode", "write")
#: errors listed one by one in the report (all are counted)
MAX_LISTED_ERRORS = 100


#: a ROS 2 namespace: "/" or "/"-separated tokens of letters, digits and underscores, none starting with a digit
NAMESPACE = re.compile(r"/?([A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*|/")


def ros_namespace(text: str) -> str:
    """argparse type of --namespace: a valid ROS 2 namespace (as rclpy would accept for a node)."""
    if not NAMESPACE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ROS 2 namespace: use /-separated names of letters, "
                                         "digits and underscores, not starting with a digit (e.g. /robot1)")
    return text


def resolve_topic(name: str, namespace: str = "/", node: str = "fer_node") -> str:
    """A topic name as ROS resolves it for a node in `namespace` (relative, absolute or ~/private)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name.startswith("~"):
        return f"{ns}/{node}/{name[1:].lstrip('/')}"
    return f"{ns}/{name}"


class OutputBag:
    """The node's output topics in a bag, at the receive times of the input images (headers copied)."""

    def __init__(self, stack: ExitStack, path: str | Path, storage: str, distro: str, node: NodeConfig,
                 namespace: str = "/", keep: int = 0):
        """keep: the pipeline's track_max_missed, frames a ROS4HRI id outlives its face (as in the node)."""
        try:
            store = messages.rosbags_typestore(distro)
        except FileNotFoundError as err:  # an install without the .msg files
            raise BagError(f"cannot write the output bag: {err}") from None
        self.types = messages.rosbags_types(store)
        self.bag = stack.enter_context(bagio.BagWriter(path, storage, distro, store=store))
        self.faces_topic = resolve_topic(node.faces_topic, namespace)
        self.detections_topic = resolve_topic(node.detections_topic, namespace)
        self.bag.add_topic(self.faces_topic, "fer_ros/msg/FaceEmotionArray")
        self.bag.add_topic(self.detections_topic, "vision_msgs/msg/Detection2DArray")
        self.rep155 = node.rep155
        self._expression_topics: set[str] = set()
        self._tracks, self._keep = TrackTopics(), keep
        if self.rep155:
            self.bag.add_topic(messages.HRI_TRACKED, "hri_msgs/msg/IdsList")
        self.counts: Counter = Counter()

    def write(self, timestamp_ns: int, header, result: FrameResult, image_size: tuple[int, int]) -> None:
        """The frame's messages as the node publishes them, the image's header copied."""
        t = self.types
        header = messages.header(t, bagio.stamp_ns(header), str(header.frame_id))  # in the output's type store
        out = [(self.faces_topic, messages.face_array(t, result, header, image_size)),
               (self.detections_topic, messages.detections(t, result, header))]
        if self.rep155:
            expressions = messages.expressions(t, result, header)
            self._tracks.update(expressions, self._keep)
            out.append((messages.HRI_TRACKED, messages.tracked_ids(t, self._tracks.ids, header)))
            for face_id, msg in expressions.items():
                topic = messages.HRI_EXPRESSION.format(face_id)
                if topic not in self._expression_topics:
                    self.bag.add_topic(topic, "hri_msgs/msg/Expression")
                    self._expression_topics.add(topic)
                out.append((topic, msg))
        for topic, msg in out:
            self.bag.write(topic, timestamp_ns, msg)
            self.counts[topic] += 1


class VideoOut:
    """An annotated MP4 of the processed frames (`fer_ros.vision.annotate`), at the first frame's size."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps, self._writer, self._size = str(path), fps, None, None

    def write(self, bgr: np.ndarray, result: FrameResult) -> None:
        frame = annotate(bgr, result)
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(opencv_path(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                           self._size)
            if not self._writer.isOpened():
                raise DataError(f"{self.path}: cannot write an MP4 video there")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median": 0.0, "p90": 0.0, "max": 0.0}
    v = np.asarray(values)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "max": float(v.max())}


@dataclass
class ReplayResult:
    report: dict  # JSON-ready, see docs/replay.md
    tracks: dict[int, tuple[list[float], list[np.ndarray]]]  # track id -> (seconds from bag start, smoothed probs)


class Tally:
    """What the report counts, frame by frame: frames, faces, stage times, errors, tracks, labelled frames."""

    def __init__(self, classes: tuple[str, ...], labels: Labels | None = None):
        self.classes, self.labels = classes, labels
        self.counts: Counter = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.faces: Counter = Counter()
        self.errors: list[dict] = []
        self.tracks: dict[int, tuple[list[float], list[np.ndarray]]] = defaultdict(lambda: ([], []))
        self.raw_sums: dict[int, np.ndarray] = {}
        self.truth: list[str] = []
        self.predicted: dict[str, list[str | None]] = {"smoothed": [], "raw": []}
        self._last_stamp = -float("inf")
        #: the processed frames' first and last index, header stamp and seconds from the bag start
        self.span: dict[str, list[float]] = {}

    def error(self, msg: bagio.BagMessage, err: Exception) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"topic": msg.topic, "index": msg.index, "stamp_s": msg.timestamp / 1e9,
                                "error": str(err)})
        if self.counts["errors"] <= 10:  # on stderr: stdout has the report
            tqdm.write(f"skipped {msg.topic} #{msg.index} at t={msg.timestamp / 1e9:.3f} s: {err}"
                       + ("; further ones are only counted (see the report)" if self.counts["errors"] == 10 else ""),
                       file=sys.stderr)

    def frame(self, msg: bagio.BagMessage, stamp_s: float, since_start: float, result: FrameResult,
              io_ms: dict[str, float]) -> None:
        self.counts["processed"] += 1
        self.counts["stale_stamps"] += stamp_s <= self._last_stamp
        self._last_stamp = stamp_s
        for key, value in (("frame", msg.index), ("stamp", stamp_s), ("seconds_from_start", since_start)):
            lo, hi = self.span.get(key, (value, value))
            self.span[key] = [min(lo, value), max(hi, value)]
        self.counts["with_face"] += bool(result.faces)
        self.counts["small_faces"] += result.n_small
        self.faces[len(result.faces)] += 1
        for f in result.faces:
            self.tracks[f.track_id][0].append(since_start)
            self.tracks[f.track_id][1].append(f.probs)
            self.raw_sums[f.track_id] = self.raw_sums.get(f.track_id, 0) + f.raw_probs
        for stage, ms in (*result.timings.items(), *io_ms.items()):
            self.times[stage].append(ms)
        label = self.labels.match(msg.index, stamp_s, since_start) if self.labels else None
        if label is not None:  # the frame's main face (the largest) answers for it
            face = max(result.faces, key=lambda f: float(f.box[2] * f.box[3]), default=None)
            self.truth.append(label)
            for kind, field in (("smoothed", "probs"), ("raw", "raw_probs")):
                best = None if face is None else self.classes[int(np.argmax(getattr(face, field)))]
                self.predicted[kind].append(best)

    def report(self, wall_s: float, bag_s: float) -> dict:
        n, t = self.counts["processed"], self.times
        io_ms, pipeline_ms = sum(sum(t[s]) for s in IO_STAGES), sum(t["total"])
        out = {
            "frames": {k: self.counts[k] for k in ("read", "decoded", "processed", "with_face", "errors")},
            "faces_per_frame": {"mean": sum(k * v for k, v in self.faces.items()) / max(1, n),
                                "max": max(self.faces, default=0),
                                "histogram": {str(k): self.faces[k] for k in sorted(self.faces)},
                                "too_small": self.counts["small_faces"]},
            "latency_ms": {s: _stats(t[s]) for s in ("detect", "align", "classify", "track", "total", *IO_STAGES)},
            "throughput": {"wall_s": wall_s, "fps": n / wall_s if wall_s else 0.0,
                           "pipeline_fps": 1e3 * n / pipeline_ms if pipeline_ms else 0.0,
                           "io_share": io_ms / (1e3 * wall_s) if wall_s else 0.0, "bag_duration_s": bag_s,
                           "realtime_factor": bag_s / wall_s if wall_s and bag_s else 0.0},
            "tracks": {str(k): self._track(k) for k in sorted(self.tracks)},
            "errors": self.errors,
        }
        if self.labels:
            unused = self.labels.unused_lines()
            out["labels"] = {"file": self.labels.path, "kind": self.labels.kind, "rows": len(self.labels.keys),
                             "rows_outside": len(unused), "lines_outside": unused[:20], "span": self.span,
                             **score(self.truth, self.predicted["smoothed"], self.predicted["raw"], self.classes)}
        return out

    def _track(self, track_id: int) -> dict:
        times, probs = self.tracks[track_id]
        mean = np.mean(probs, axis=0)
        return {"frames": len(times), "start_s": times[0], "end_s": times[-1],
                "dominant": self.classes[int(np.argmax(mean))],
                "dominant_raw": self.classes[int(np.argmax(self.raw_sums[track_id]))],
                "mean_probabilities": {c: round(float(p), 4) for c, p in zip(self.classes, mean, strict=True)}}


def replay(bag_path: str | Path, config: PipelineConfig | None = None, node: NodeConfig | None = None, *,
           topic: str | None = None, out: str | Path | None = None, out_storage: str | None = None,
           out_distro: str | None = None, namespace: str = "/", labels: str | Path | None = None,
           video: str | Path | None = None, max_frames: int | None = None, pipeline: Pipeline | None = None,
           progress: bool = True, on_read=None) -> ReplayResult:
    """Replay a bag through the pipeline: the report (see docs/replay.md for its fields) and the timelines.

    A bad image message is reported with its position and skipped; a storage error (truncated or
    corrupt bag) or Ctrl-C ends the run early, and everything computed so far is reported and written.
    `pipeline` reuses a loaded one (reset first) instead of building one from `config`; `on_read()`, if
    given, is called after each image message is read (a fleet's progress).
    """
    truth = read_labels(labels) if labels else None
    with ExitStack() as stack:
        stack.enter_context(removed_on_failure(out))  # exits last: after the output bag is closed
        reader = stack.enter_context(bagio.BagReader(bag_path))
        info = reader.image_topic(topic)
        if pipeline is None:
            pipeline = Pipeline(config or PipelineConfig())
        if progress:
            print(f"fer-ros replay: {pipeline.detector_note}", file=sys.stderr)
        pipeline.reset()
        if truth:
            truth.check(pipeline.classes)
        writer = (OutputBag(stack, out, out_storage or reader.storage, out_distro or reader.layout,
                            node or NodeConfig(), namespace, pipeline.config.track_max_missed) if out else None)
        video_out = None
        if video:
            hz = (info.count - 1) / (reader.duration_ns / 1e9) if info.count and reader.duration_ns else 30.0
            video_out = VideoOut(stack.enter_context(atomic_output(video, keep_on_interrupt=True)), hz)
            stack.callback(video_out.close)  # before atomic_output renames it
        bar = stack.enter_context(tqdm(total=min(info.count or 0, max_frames or 1 << 62) or None, unit="frame",
                                       desc="replay", disable=not progress, dynamic_ncols=True))
        tally = Tally(pipeline.classes, truth)
        start_ns, stopped = reader.start_ns, None
        messages_it = reader.messages(info.name)
        t_begin = time.perf_counter()
        try:
            while max_frames is None or tally.counts["read"] < max_frames:
                t0 = time.perf_counter()
                try:
                    msg = next(messages_it)
                except StopIteration:
                    break
                except BagError as err:
                    stopped = str(err)
                    break
                t1 = time.perf_counter()
                tally.counts["read"] += 1
                bar.update()
                if on_read:
                    on_read()
                start_ns = msg.timestamp if start_ns is None else start_ns
                try:
                    bgr, header = reader.decode_image(info.msgtype, msg.data)
                    tally.counts["decoded"] += 1
                    t2 = time.perf_counter()
                    stamp_s = bagio.stamp_ns(header) / 1e9  # smoothing runs in bag time, as in the node
                    result = pipeline.process(bgr, stamp_s)
                except ImageError as err:
                    tally.error(msg, err)
                    continue
                t3 = time.perf_counter()
                if writer:
                    writer.write(msg.timestamp, header, result, (bgr.shape[1], bgr.shape[0]))
                t4 = time.perf_counter()
                if video_out:
                    video_out.write(bgr, result)
                tally.frame(msg, stamp_s, (msg.timestamp - start_ns) / 1e9, result,
                            {"read": 1e3 * (t1 - t0), "decode": 1e3 * (t2 - t1), "write": 1e3 * (t4 - t3)})
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C)"
            tqdm.write("interrupted: reporting what was processed so far", file=sys.stderr)
        wall = time.perf_counter() - t_begin
        if reader.damaged and not stopped:  # MCAP: the repaired copy ends cleanly after its last intact message
            stopped = f"{reader.damaged}: the bag ends after the {tally.counts['read']} messages before the damage"
        if stopped and not stopped.startswith("interrupted"):
            where = "" if stopped.startswith(str(bag_path)) else f"{bag_path}: "
            warnings.warn(FerRosWarning(f"{where}{stopped}; the report covers what was read before"),
                          stacklevel=2)
        if tally.counts["stale_stamps"]:
            reader.notes.append(f"{tally.counts['stale_stamps']} images have a header.stamp not after the previous "
                                "one (a driver that does not stamp?): the smoothing, in bag time, does not advance "
                                "over them, in the node neither")
        report = {
            "bag": str(bag_path), "topic": info.name, "type": info.msgtype, "storage": reader.storage,
            "layout": reader.layout, "notes": reader.notes, "stopped": stopped,
            "config": dataclasses.asdict(pipeline.config), "model": str(pipeline.backend.path),
            "detector": pipeline.detector_info,
            "classes": list(pipeline.classes), **tally.report(wall, reader.duration_ns / 1e9), "outputs": {},
        }
        if writer:
            report["outputs"]["bag"] = {"path": str(out), "topics": dict(writer.counts)}
        if video_out:
            report["outputs"]["video"] = str(video)
        return ReplayResult(report, dict(tally.tracks))


def write_report(result: ReplayResult, folder: str | Path) -> dict:
    """report.json, timeline.png and, with labels, confusion PNGs into `folder`; returns their paths."""
    from ..plots import plot_confusion
    from .timeline import plot_timeline

    report = result.report
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"report": str(folder / "report.json"), "timeline": str(folder / "timeline.png")}
    with atomic_output(paths["timeline"]) as tmp:
        plot_timeline(result.tracks, tuple(report["classes"]), tmp,
                      title=f"{Path(report['bag']).name} {report['topic']}: smoothed probabilities per face")
    if "labels" in report:
        for kind in ("smoothed", "raw"):
            r = report["labels"][f"expression_{kind}"]
            if r["n"]:
                paths[f"confusion_{kind}"] = str(folder / f"confusion_{kind}.png")
                with atomic_output(paths[f"confusion_{kind}"]) as tmp:
                    plot_confusion(r["confusion"], r["classes"], tmp, title=f"{kind} labels, labelled frames")
    report["outputs"].update(paths)
    with atomic_output(paths["report"]) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    return paths


def print_report(report: dict) -> None:
    fr, tp = report["frames"], report["throughput"]
    print(f"\n{report['bag']}  {report['topic']} [{report['type']}]  {report['storage']}, {report['layout']} layout")
    print(f"face detector {report['detector']['why']}")
    for note in report["notes"]:
        print(f"note: {note}")
    if report["stopped"]:
        print(f"stopped early: {report['stopped']}")
    fpf = report["faces_per_frame"]
    print(f"frames: {fr['read']} read, {fr['decoded']} decoded, {fr['processed']} processed, {fr['errors']} skipped; "
          f"{fr['with_face']} with a face, {fpf['mean']:.2f} faces/frame (max {fpf['max']}; "
          f"{fpf['too_small']} more below min_face_size)")
    print(f"\n{'stage':<10}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    for stage, s in report["latency_ms"].items():
        print(f"{stage:<10}{s['median']:>11.2f}{s['p90']:>9.2f}{s['max']:>9.2f}")
    print(f"\nthroughput: {tp['fps']:.1f} frames/s replay, {tp['pipeline_fps']:.1f} frames/s pipeline alone; "
          f"bag read/decode/write {100 * tp['io_share']:.1f}% of the time; "
          f"{tp['realtime_factor']:.2f}x real time")
    if report["tracks"]:
        print(f"\n{'track':<7}{'frames':>7}{'from s':>8}{'to s':>8}  dominant (smoothed / raw)")
        for k, t in report["tracks"].items():
            print(f"{k:<7}{t['frames']:>7}{t['start_s']:>8.2f}{t['end_s']:>8.2f}  "
                  f"{t['dominant']} / {t['dominant_raw']}")
    if "labels" in report:
        lab = report["labels"]
        print(f"\nlabelled frames: {lab['frames']}\nface detection:\n{format_report(lab['detection'])}")
        for kind in ("smoothed", "raw"):
            if lab[f"expression_{kind}"]["n"]:
                print(f"expression, {kind} labels:\n{format_report(lab[f'expression_{kind}'])}")
        if lab["expression_smoothed"]["n"]:
            g = lab["smoothing_gain"]
            print(f"smoothing changes accuracy by {g['accuracy']:+.4f} and macro-F1 by {g['macro_f1']:+.4f}")
    for name, path in report["outputs"].items():
        print(f"{name}: {path['path'] if isinstance(path, dict) else path}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", nargs="+", metavar="BAG",
                   help="rosbag2 directory (sqlite3 or MCAP, Humble or Jazzy), or its .db3/.mcap file; several bags, "
                        "a glob, a folder of bags or a .txt file listing bags replay them all (see --out)")
    p.add_argument("--topic", help="image topic (default: the bag's only Image/CompressedImage topic)")
    p.add_argument("--config", metavar="YAML",
                   help="node parameters file (fer_ros/config/fer.yaml layout); the options below override it")
    p.add_argument("--out", metavar="DIR", help="write the node's output topics to this new bag "
                   "(several bags: the folder that gets one folder per bag and the fleet report)")
    p.add_argument("--out-storage", choices=bagio.STORAGES, help="storage of --out (default: the input's)")
    p.add_argument("--out-distro", choices=bagio.DISTROS, help="layout of --out (default: the input's)")
    p.add_argument("--namespace", default="/", metavar="NS", type=ros_namespace,
                   help="node namespace the output topics are resolved in "
                                                    "(default: %(default)s)")
    p.add_argument("--rep155", action=argparse.BooleanOptionalAction, default=None,
                   help="also write the ROS4HRI topics (default: the parameters file's rep155, else off)")
    p.add_argument("--labels", metavar="CSV", help="CSV of true labels: start,end,label | stamp,label | frame,label "
                                    "(label: an expression, face, or none); see docs/replay.md. Several bags: "
                                    "a folder of <bag name>.csv (default: <bag name>.csv beside each bag)")
    p.add_argument("--video", metavar="MP4",
                   help="write an annotated MP4 here (several bags: under this name in each bag's folder)")
    p.add_argument("--report", metavar="DIR", help="folder for report.json, timeline.png and confusion PNGs "
                                    "(default: <bag name>_replay)")
    p.add_argument("--max-frames", type=number(int, 1), metavar="N", help="stop after this many image messages")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    config_arguments(p)


def parameters(args) -> dict:
    """The node parameters of the command line: the --config file, overridden by the options; FerRosError for a
    recognizer-mode file, which a replay cannot run."""
    values = {**(read_parameters(args.config) if args.config else {}), **overrides_from(args)}
    if args.rep155 is not None:
        values["rep155"] = args.rep155
    _, node = configs_from_parameters(values)
    if node.mode != "detector":
        raise FerRosError(f"{args.config}: mode: {node.mode}: replay runs the detector mode over the bag's camera "
                          "images; a recognizer classifies another detector's per-face images, which a replay does "
                          "not feed. Give a detector-mode parameters file (or set mode: detector)")
    return values


def run(args) -> int:
    """Exit status 0 when every image message was processed, 1 when some were skipped, the bag ended early
    (truncated, or Ctrl-C) or label rows covered no frame (all said in the report), and 2 (an error) when none
    could be processed or no label row covered a frame."""
    inputs = [args.bag, args.labels, args.config]
    report_dir = args.report or f"{Path(os.path.abspath(args.bag)).name}_replay"
    check_output(args.out, "--out", "bag", inputs)
    check_output(args.video, "--video", "video", inputs)
    check_output(report_dir, "--report", "folder", inputs)
    config, node = configs_from_parameters(parameters(args))
    result = replay(args.bag, config, node, topic=args.topic, out=args.out, out_storage=args.out_storage,
                    out_distro=args.out_distro, namespace=args.namespace, labels=args.labels, video=args.video,
                    max_frames=args.max_frames, progress=not args.no_progress)
    write_report(result, report_dir)
    print_report(result.report)
    report, frames = result.report, result.report["frames"]
    if not frames["processed"]:
        why = (report["errors"][0]["error"] if report["errors"] else report["stopped"]
               or "the topic has no messages")
        raise BagError(f"{args.bag}: nothing processed: none of the {frames['read']} messages on {report['topic']} "
                       f"gave a frame (first: {why}); see {Path(report_dir) / 'report.json'}")
    return max(_check_labels(report.get("labels"), report_dir), 1 if frames["errors"] or report["stopped"] else 0)


def _check_labels(labels: dict | None, report_dir) -> int:
    """DataError when the labels cover no replayed frame; a warning and 1 when some rows cover none."""
    if not labels or not labels["rows_outside"]:
        return 0
    span, kind = labels["span"], labels["kind"]
    have = {"interval": f"{span['seconds_from_start'][0]:.3f}..{span['seconds_from_start'][1]:.3f} s from the bag "
                        "start (intervals are seconds from the first message, not header stamps)",
            "stamp": f"header stamps {span['stamp'][0]:.3f}..{span['stamp'][1]:.3f} s (stamp rows are header "
                     "stamps in seconds, sec + nanosec / 1e9)",
            "frame": f"frames {span['frame'][0]}..{span['frame'][1]} (frame rows are indices on the image topic, "
                     "from 0)"}[kind]
    lines = ", ".join(map(str, labels["lines_outside"][:5])) + (", ..." if labels["rows_outside"] > 5 else "")
    if labels["rows_outside"] == labels["rows"]:
        raise DataError(f"{labels['file']}: none of its {labels['rows']} rows covers a replayed frame; the frames "
                        f"are {have}; nothing was scored (see {Path(report_dir) / 'report.json'})")
    warnings.warn(FerRosWarning(f"{labels['file']}: {labels['rows_outside']} of {labels['rows']} rows cover no "
                                f"replayed frame (lines {lines}); the frames are {have}"), stacklevel=2)
    return 1
