"""`fer-ros replay` over many bags: one Dask distributed task per bag, one fleet report.

Each bag is replayed by `replay.replay`, the single-bag replay, in a worker process, into its own folder
under --out (output bag, report.json, timeline, confusion PNGs, video). The engine is a local cluster with
one single-threaded worker process per core, or an existing cluster (--address, or DASK_SCHEDULER_ADDRESS).
A bag whose replay fails is a failed row; a bag whose worker dies is rescheduled by the engine once, then
failed; a bag whose folder already holds a complete report of the same input (size and SHA-256) and the
same parameters is not replayed again, so a stopped run resumes where it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..cli import EXIT_OK, EXIT_SKIPPED, check_output, error_line, number
from ..config import PipelineConfig
from ..errors import BagError, FerRosError
from ..pipeline import Pipeline
from ..ros.node_logic import configs_from_parameters
from . import fleet_report, replay
from .baglist import find_bags, image_messages, is_fleet, labels_for, unique_names

#: worker deaths a bag's task survives: it is run once more, then failed (the local cluster's scheduler setting)
ALLOWED_FAILURES = 1
#: the engine's event topic on which workers count the frames they read, at most every EVENT_PERIOD_S
FRAMES_TOPIC = "fer_ros.replay.frames"
EVENT_PERIOD_S = 0.5
INSTALL = "pip install 'fer_ros[fleet]'"
ATTEMPTS = "attempts.log"


@dataclass(frozen=True)
class Job:
    """One bag's replay, as a task sends it to a worker (paths absolute, on a file system every worker sees)."""

    bag: str
    folder: str
    labels: str | None
    values: dict  # node parameters: the --config file and the options
    options: dict  # replay() keywords: topic, namespace, out_storage, out_distro, max_frames
    video: str | None  # file name of the annotated video in the folder
    digest: str  # SHA-256 of what changes the outputs: parameters, options, labels

    @property
    def name(self) -> str:
        return Path(self.folder).name


def make_jobs(bags: list[Path], out: Path, values: dict, options: dict, labels: str | None = None,
              video: str | None = None) -> list[Job]:
    jobs = []
    for bag, name in zip(bags, unique_names(bags), strict=True):
        truth = labels_for(bag, labels)
        settings = {"values": values, "options": options, "video": video,
                    "labels_sha256": truth and hashlib.sha256(truth.read_bytes()).hexdigest()}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        jobs.append(Job(str(bag), str((out / name).resolve()), truth and str(truth.resolve()), values, options,
                        video, digest))
    return jobs


def _files(bag: Path) -> list[tuple[str, Path]]:
    return [(str(p.relative_to(bag)), p) for p in sorted(bag.rglob("*")) if p.is_file()] if bag.is_dir() \
        else [(bag.name, bag)]


def file_stats(bag: str | Path) -> str:
    """A digest of a bag's file names, sizes and modification times: unchanged files, in a second's work."""
    lines = (f"{name} {p.stat().st_size} {p.stat().st_mtime_ns}" for name, p in _files(Path(bag)))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fingerprint(bag: str | Path) -> dict:
    """Size and SHA-256 of a bag's files (names and contents, in name order), and their `file_stats`."""
    digest, size = hashlib.sha256(), 0
    for name, path in _files(Path(bag)):
        digest.update(name.encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
                size += len(block)
    return {"size": size, "sha256": digest.hexdigest(), "stats": file_stats(bag)}


def earlier(job: Job) -> dict | None:
    """The fleet part of an earlier complete replay into the job's folder with the same parameters, if all its
    outputs are there: the input it read (size, SHA-256, file stats) and its row."""
    try:
        report = json.loads((Path(job.folder) / "report.json").read_text())
        fleet = report["fleet"]
        outputs = [o["path"] if isinstance(o, dict) else o for o in report["outputs"].values()]
        complete = fleet["digest"] == job.digest and fleet["row"]["status"] in fleet_report.COMPLETE and \
            {"size", "sha256"} <= fleet["input"].keys()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fleet if complete and all(Path(o).exists() for o in outputs) else None


def replay_bag(job: Job) -> dict:
    """The unit of work: replay one bag into its folder and return its fleet row; a bag replayed before with
    the same parameters, whose size and SHA-256 are the same (recomputed only when a file's size or time
    changed), is not replayed again."""
    folder = Path(job.folder)
    try:
        before = earlier(job)
        same_files = before is not None and before["input"].get("stats") == file_stats(job.bag)
        source = before["input"] if same_files else fingerprint(job.bag)
    except OSError as err:
        return fleet_report.failed_row(job.bag, folder, _why(err))
    if before and (before["input"]["size"], before["input"]["sha256"]) == (source["size"], source["sha256"]):
        return {**before["row"], "reused": True}
    attempts = _start_attempt(folder)
    t0 = time.perf_counter()
    try:
        config, node = configs_from_parameters(job.values)
        pipeline, events = _pipeline(config), _FrameEvents()
        result = replay.replay(job.bag, config, node, out=folder / "bag", labels=job.labels,
                               video=job.video and folder / job.video, pipeline=pipeline, progress=False,
                               on_read=events, **job.options)
        events.send()
        row = fleet_report.bag_row(result.report, folder, pipeline.detector.name, attempts,
                                   time.perf_counter() - t0)
        result.report["fleet"] = {"input": source, "digest": job.digest, "row": row}
        replay.write_report(result, folder)
    except Exception as err:  # any error is this bag's failure, not the fleet's
        row = fleet_report.failed_row(job.bag, folder, _why(err), attempts)
    (folder / ATTEMPTS).unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
    return row


def _why(err: BaseException) -> str:
    return error_line("replay", err)[0].split(": error: ", 1)[1]


def _start_attempt(folder: Path) -> int:
    """Clear what an earlier, unfinished attempt left in the folder and count this one (attempts.log)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name != ATTEMPTS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    with (folder / ATTEMPTS).open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}\n")
    return len((folder / ATTEMPTS).read_text().splitlines())


_PIPELINES: dict[str, Pipeline] = {}


def _pipeline(config: PipelineConfig) -> Pipeline:
    """The worker's pipeline for `config`, loaded once (replay resets it for each bag)."""
    key = repr(config)
    if key not in _PIPELINES:
        _PIPELINES.clear()
        _PIPELINES[key] = Pipeline(config)
    return _PIPELINES[key]


class _FrameEvents:
    """Counts the frames a worker reads and sends the count to the client as engine events, in batches."""

    def __init__(self):
        try:
            from distributed import get_worker

            self.worker = get_worker()
        except (ImportError, ValueError):  # not in a worker: no one to tell
            self.worker = None
        self.count, self.sent = 0, time.monotonic()

    def __call__(self) -> None:
        self.count += 1
        if time.monotonic() - self.sent >= EVENT_PERIOD_S:
            self.send()

    def send(self) -> None:
        if self.worker is not None and self.count:
            self.worker.log_event(FRAMES_TOPIC, self.count)
        self.count, self.sent = 0, time.monotonic()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise FerRosError(f"replaying several bags needs Dask distributed, which is not installed: {INSTALL} "
                          "(one bag at a time needs nothing more)") from None
    return distributed


@contextmanager
def engine(address: str | None = None, workers: int | None = None):
    """A Dask client: of the cluster at `address` (or DASK_SCHEDULER_ADDRESS), else of a local cluster of
    `workers` single-threaded worker processes on 127.0.0.1 (default: one per core), closed on exit."""
    import dask

    distributed = _distributed()
    address = address or dask.config.get("scheduler-address", None)
    if address:
        try:
            client = distributed.Client(address, timeout="20s")
        except OSError as err:
            raise FerRosError(f"--address {address}: cannot reach a Dask scheduler ({err}); start one "
                              "(dask scheduler) or drop --address to run on this machine") from None
        with client:
            yield client
        return
    # dashboard_address ":0": any free port for the HTTP endpoints (8787 may be taken by another cluster)
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}), \
            distributed.LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1, processes=True,
                                     host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def replay_fleet(client, jobs: list[Job], progress: bool = True) -> tuple[list[dict], bool]:
    """Every job as a task on the client's cluster: (a row per job, in order; whether Ctrl-C stopped it).

    Rows come back as bags finish; on Ctrl-C the bags not finished are cancelled and listed as not run.
    """
    distributed = _distributed()
    expected = [image_messages(Path(j.bag), j.options.get("topic")) for j in jobs]
    max_frames = jobs[0].options.get("max_frames") if jobs else None
    total = sum(min(n, max_frames or n) for n in expected if n) or None
    bags = tqdm(total=len(jobs), unit="bag", desc="bags", disable=not progress, position=0, dynamic_ncols=True)
    frames = tqdm(total=total, unit="frame", desc="frames", disable=not progress, position=1, dynamic_ncols=True)
    client.subscribe_topic(FRAMES_TOPIC, lambda event: frames.update(event[1]))
    run = uuid.uuid4().hex[:8]
    futures = {client.submit(replay_bag, job, key=f"fer-ros-replay-{job.name}-{run}", pure=False): job
               for job in jobs}
    rows, interrupted = {}, False
    try:
        for future in distributed.as_completed(futures):
            job = futures[future]
            try:
                row = future.result()
            except distributed.KilledWorker as err:
                tries = getattr(err, "allowed_failures", ALLOWED_FAILURES) + 1
                row = fleet_report.failed_row(job.bag, job.folder, f"its worker died while replaying it, {tries} "
                                              "times (out of memory? a crash in native code?); see the worker logs",
                                              tries)
            except Exception as err:
                row = fleet_report.failed_row(job.bag, job.folder, _why(err))
            rows[job.folder] = row
            bags.update()
            bags.set_postfix_str(f"{sum(r['status'] == 'failed' for r in rows.values())} failed")
            if row.get("reused"):
                frames.update(row["read"])
    except KeyboardInterrupt:
        interrupted = True
        client.cancel(list(futures))
    finally:
        client.unsubscribe_topic(FRAMES_TOPIC)
        frames.close()
        bags.close()
    return [rows.get(j.folder) or fleet_report.failed_row(j.bag, j.folder, "not run: interrupted (Ctrl-C)",
                                                          status="not run") for j in jobs], interrupted


def add_arguments(p) -> None:
    """`fer-ros replay`'s options, and those of many bags."""
    replay.add_arguments(p)
    many = p.add_argument_group("several bags (a fleet: needs fer_ros[fleet], see docs/replay.md)")
    many.add_argument("--address", metavar="HOST:PORT",
                      help="the Dask scheduler of an existing cluster (default: DASK_SCHEDULER_ADDRESS, else a local "
                           "cluster of --workers processes on this machine)")
    many.add_argument("--workers", type=number(int, 1), metavar="N",
                      help="worker processes of the local cluster (default: one per core)")


def run(args) -> int:
    """One bag: `replay.run`. Several: replay them all on the engine; exit 0 when every bag was replayed whole,
    1 when some failed or skipped frames or the run was interrupted, 2 (BagError) when none could be."""
    if not is_fleet(args.bag):
        args.bag = args.bag[0]
        return replay.run(args)
    if args.report:
        raise FerRosError(f"--report {args.report}: with several bags each report is in its bag's folder under "
                          "--out, and the fleet report in --out; drop --report")
    if not args.out:
        raise FerRosError("several bags need --out DIR: the folder for one folder per bag and the fleet report")
    if args.labels and not Path(args.labels).is_dir():
        raise FerRosError(f"--labels {args.labels}: with several bags, give a folder of <bag name>.csv files "
                          "(or put each beside its bag)")
    if args.video and Path(args.video).name != args.video:
        raise FerRosError(f"--video {args.video}: with several bags, give a file name (such as annotated.mp4), "
                          "written in each bag's folder")
    bags = find_bags(args.bag)
    _distributed()
    out = check_output(args.out, "--out", "folder", bags)
    values = replay.parameters(args)
    _pipeline(configs_from_parameters(values)[0])  # bad parameters, model or detector stop here, before any work
    out.mkdir(parents=True, exist_ok=True)
    if args.video:
        check_output(out / args.video, "--video", "video")
    options = {"topic": args.topic, "namespace": args.namespace, "out_storage": args.out_storage,
               "out_distro": args.out_distro, "max_frames": args.max_frames}
    jobs = make_jobs(bags, out, values, options, args.labels, args.video)
    t0 = time.perf_counter()
    with engine(args.address, args.workers) as client:
        where = {"scheduler": client.scheduler.address, "workers": len(client.scheduler_info()["workers"])}
        rows, interrupted = replay_fleet(client, jobs, progress=not args.no_progress)
    fleet = {**fleet_report.summary(rows, time.perf_counter() - t0, interrupted), "engine": where}
    fleet_report.write(fleet, out)
    fleet_report.print_summary(fleet)
    if interrupted:
        print(f"interrupted: {fleet['totals']['done']} of {len(rows)} bags done and kept; run the same command "
              "again to replay the others")
    if not fleet["totals"]["done"] and not interrupted:
        first = next(r["error"] for r in rows if r["error"])
        raise BagError(f"none of the {len(rows)} bags could be replayed (first: {first}); "
                       f"see {out / 'fleet.csv'}")
    return EXIT_OK if all(r["status"] == "ok" for r in rows) else EXIT_SKIPPED
