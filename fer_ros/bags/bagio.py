"""Read and write rosbag2 bags without ROS (rosbags): sqlite3 or MCAP storage, Humble or Jazzy layout.

A Humble-layout bag is what ROS 2 Humble records: metadata version 5 and, in sqlite3, no message
definitions (db schema 3). A Jazzy-layout bag has metadata version 9 and stores the definitions.
Reading accepts either, a bare .db3/.mcap file, a bag directory without metadata.yaml (an interrupted
recording), and a truncated file, of which the complete messages are read from a repaired copy.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import BagError, ImageError, read_yaml
from ..ros import messages
from ..ros.messages import DISTROS

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
STORAGES = ("sqlite3", "mcap")
#: the storage `ros2 bag record` uses by default in each distro
DEFAULT_STORAGE = {"humble": "sqlite3", "jazzy": "mcap"}
_SUFFIX = {".db3": "sqlite3", ".mcap": "mcap"}
_MCAP_MAGIC = b"\x89MCAP0\r\n"


def require_rosbags() -> None:
    """BagError (what to install) unless rosbags can be imported: call it before any work that ends in a bag."""
    _rosbags()


def _rosbags():
    try:
        import rosbags.rosbag2 as rosbag2
        import rosbags.typesys as typesys
    except ImportError:
        raise BagError("reading and writing bags needs rosbags: pip install 'fer_ros[bag]'") from None
    return rosbag2, typesys


def typestore(distro: str = "humble"):
    """The rosbags type store of a distro's messages, fer_ros's own and vision_msgs/hri_msgs included."""
    _rosbags()  # a clear error when rosbags is not installed
    return messages.rosbags_typestore(distro)


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int | None  # None: unknown (a recovered file)
    definition: bool  # the bag stores the message definition


@dataclass(frozen=True)
class BagMessage:
    topic: str
    index: int  # position on its topic, from 0
    timestamp: int  # receive time, ns
    data: bytes | memoryview  # CDR


class BagReader:
    """A bag opened for reading: its topics and the messages of a topic in receive order.

    Use as a context manager. `notes` says what was repaired or assumed while opening.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.notes: list[str] = []
        #: why the bag was read from a repaired copy (a truncated or corrupt file), else None
        self.damaged: str | None = None
        self._stack = ExitStack()
        self._salvage: _SqliteSalvage | None = None
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (give a rosbag2 directory or its .db3/.mcap file)")
        meta = _read_metadata(self.path)
        self.version: int | None = meta.get("version")
        try:
            self._open(self._storage_target(meta))
        except BaseException:
            self._stack.close()
            raise
        self.layout = ("jazzy" if self.version >= 8 else "humble") if self.version is not None else (
            "jazzy" if any(t.definition for t in self.topics.values()) else "humble")
        self.store = typestore(self.layout)

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def _storage_target(self, meta: dict) -> Path:
        if self.path.is_file():
            self.storage = _SUFFIX.get(self.path.suffix)
            return self.path
        if meta:
            self.storage = meta.get("storage_identifier")
            return self.path
        files = sorted(p for p in self.path.iterdir() if p.suffix in _SUFFIX)
        if len(files) != 1:
            raise BagError(f"{self.path}: no metadata.yaml and {len(files)} .db3/.mcap files; "
                           f"run `ros2 bag reindex {self.path}` to rebuild the metadata")
        self.storage = _SUFFIX[files[0].suffix]
        self.notes.append(f"no metadata.yaml (interrupted recording?): read {files[0].name} directly")
        return files[0]

    def _open(self, target: Path) -> None:
        rosbag2, _ = _rosbags()
        try:
            self._reader = self._open_rosbags(target)
        except rosbag2.ReaderError as err:
            self._recover(target, err)

    def _open_rosbags(self, target: Path):
        rosbag2, _ = _rosbags()
        reader = rosbag2.Reader(target)
        reader.open()
        self._stack.callback(reader.close)
        self.topics: dict[str, TopicInfo] = {}
        for c in reader.connections:
            old = self.topics.get(c.topic)
            self.topics[c.topic] = TopicInfo(c.topic, c.msgtype, c.msgcount + (old.count if old else 0),
                                             bool(c.msgdef.data) or bool(old and old.definition))
        self.start_ns: int | None = reader.start_time if reader.message_count else None
        self.duration_ns = reader.duration if reader.message_count else 0
        self.message_count: int | None = reader.message_count
        return reader

    def _recover(self, target: Path, err: Exception) -> None:
        """Read what is intact in a truncated storage file, from a repaired copy in a temporary folder."""
        files = [target] if target.is_file() else sorted(p for p in target.iterdir() if p.suffix in _SUFFIX)
        if len(files) != 1 or files[0].suffix not in _SUFFIX:
            raise BagError(f"{self.path}: cannot read the bag: {err}") from None
        src = files[0]
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fer_ros_bag_")))
        try:
            if src.suffix == ".mcap":
                kept = _repair_mcap(src, tmp / src.name)
                self._reader = self._open_rosbags(tmp / src.name)
            else:
                self._salvage = _SqliteSalvage(src, tmp / src.name)
                self._stack.callback(self._salvage.close)
                kept = self._salvage.kept
                self.topics = self._salvage.topics
                self.start_ns, self.duration_ns, self.message_count = None, 0, None
        except (sqlite3.Error, OSError, _rosbags()[0].ReaderError) as err2:
            raise BagError(f"{src}: truncated or corrupt, nothing could be recovered: {err}; {err2}") from None
        if not self.topics:
            raise BagError(f"{src}: truncated or corrupt, nothing could be recovered: {err}")
        self.damaged = f"{src.name} is truncated or corrupt ({err})"
        self.notes.append(f"{self.damaged}: reading the messages in its first {kept} bytes that are intact")

    def image_topic(self, topic: str | None = None) -> TopicInfo:
        """The image topic to read: `topic` if given, else the only Image/CompressedImage topic."""
        if topic is not None:
            if topic not in self.topics:
                raise BagError(f"{self.path}: no topic {topic}; it has {self.listing()}")
            if self.topics[topic].msgtype not in IMAGE_TYPES:
                raise BagError(f"{self.path}: {topic} is {self.topics[topic].msgtype}, not an image")
            return self.topics[topic]
        images = [t for t in self.topics.values() if t.msgtype in IMAGE_TYPES]
        if not images:
            raise BagError(f"{self.path}: no sensor_msgs/Image or CompressedImage topic; it has {self.listing()}")
        if len(images) > 1:
            raise BagError(f"{self.path}: {len(images)} image topics ({', '.join(t.name for t in images)}); "
                           "choose one with --topic")
        return images[0]

    def listing(self) -> str:
        return ", ".join(f"{t.name} [{t.msgtype}]" for t in self.topics.values()) or "no topics"

    def messages(self, topic: str) -> Iterator[BagMessage]:
        """The messages of `topic` in receive order; a storage error raises BagError naming the position."""
        index, ts = 0, None
        try:
            if self._salvage is not None:
                rows = self._salvage.messages(topic)
            else:
                rows = ((t, d) for _, t, d in self._reader.messages(
                    connections=[c for c in self._reader.connections if c.topic == topic]))
            for ts, data in rows:
                yield BagMessage(topic, index, ts, data)
                index += 1
        except Exception as err:  # any storage error (sqlite3, apsw, rosbags, OS): report where it stopped
            where = f"after message {index - 1} (t={ts / 1e9:.3f} s)" if index else "at its first message"
            raise BagError(f"{self.path}: {topic} unreadable {where}: {err}") from None

    def decode_image(self, msgtype: str, data) -> tuple[np.ndarray, object]:
        """An Image or CompressedImage message (CDR) to (BGR uint8 image, its std_msgs Header); else ImageError."""
        from rosbags.serde import SerdeError

        from ..ros.messages import bgr_from_msg
        try:
            msg = self.store.deserialize_cdr(data, msgtype)
        except SerdeError as err:
            raise ImageError(f"cannot deserialize {msgtype}: {err}") from None
        return bgr_from_msg(msg), msg.header


def _read_metadata(path: Path) -> dict:
    """rosbag2_bagfile_information from metadata.yaml, or {} when there is none."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return {}
    redo = f"delete it and run `ros2 bag reindex {path}`"
    doc = read_yaml(meta, "bag metadata", BagError, hint=redo)
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta}: not a rosbag2 metadata file (no rosbag2_bagfile_information mapping); {redo}")
    return info


def _copy_prefix(src: Path, dst: Path, n: int) -> None:
    with src.open("rb") as f, dst.open("wb") as out:
        while n > 0:
            block = f.read(min(n, 1 << 20))
            if not block:
                break
            out.write(block)
            n -= len(block)


def _repair_mcap(src: Path, dst: Path) -> int:
    """Copy the complete records of a truncated MCAP file, closed with an empty summary; returns bytes kept."""
    size = src.stat().st_size
    with src.open("rb") as f:
        if f.read(8) != _MCAP_MAGIC:
            raise BagError(f"{src}: not an MCAP file")
        end = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            op, n = head[0], int.from_bytes(head[1:], "little")
            if op in (0x0F, 0x02) or end + 9 + n > size:  # data end or footer: the data section is complete
                break
            f.seek(n, 1)
            end += 9 + n
    _copy_prefix(src, dst, end)
    with dst.open("ab") as out:
        out.write(b"\x0f" + (4).to_bytes(8, "little") + bytes(4))  # data end, no CRC
        out.write(b"\x02" + (20).to_bytes(8, "little") + bytes(20))  # footer: no summary
        out.write(_MCAP_MAGIC)
    return end


class _SqliteSalvage:
    """The intact messages of a truncated .db3, read in recording order from a copy with a corrected header."""

    def __init__(self, src: Path, dst: Path):
        with src.open("rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            raise sqlite3.DatabaseError("not an SQLite database")
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        self.kept = src.stat().st_size // page * page
        _copy_prefix(src, dst, self.kept)
        with dst.open("r+b") as f:  # the page count SQLite trusts, so it reads the pages that are there
            f.seek(28)
            f.write((self.kept // page).to_bytes(4, "big"))
        self._con = sqlite3.connect(f"file:{dst}?mode=ro", uri=True)
        rows = self._con.execute("SELECT id, name, type FROM topics ORDER BY id").fetchall()
        self._ids = {name: i for i, name, _ in rows}
        self.topics = {name: TopicInfo(name, msgtype, None, False) for _, name, msgtype in rows}

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        yield from self._con.execute("SELECT timestamp, data FROM messages WHERE topic_id = ? ORDER BY id",
                                     (self._ids[topic],))

    def close(self) -> None:
        self._con.close()


class BagWriter:
    """A new bag, written with rosbags; use as a context manager, which closes it even after an error.

    Messages are instances of `self.store.types[...]`: the distro's standard types, or give a `store`
    with more registered (`fer_ros.ros.messages.rosbags_typestore`).
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3", distro: str = "humble", store=None):
        rosbag2, _ = _rosbags()
        self.path = Path(path)
        if storage not in STORAGES or distro not in DISTROS:
            raise BagError(f"storage must be one of {STORAGES} and distro one of {DISTROS}")
        if self.path.exists():
            raise BagError(f"{self.path} exists; remove it or choose another output path")
        self.distro = distro
        self.store = store or typestore(distro)
        plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
        # Humble-layout bags are written at version 8 (string QoS, as Humble reads) and rewritten to 5 on close
        self._writer = rosbag2.Writer(self.path, version=9 if distro == "jazzy" else 8, storage_plugin=plugin)
        self._conns: dict = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except OSError as err:
            raise BagError(f"cannot create {self.path}: {err}") from None
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()
        if self.distro == "humble":
            _to_humble_layout(self.path)

    def add_topic(self, topic: str, msgtype: str) -> None:
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)

    def write(self, topic: str, timestamp_ns: int, msg) -> None:
        """Write a message object at receive time `timestamp_ns`."""
        conn = self._conns[topic]
        self._writer.write(conn, timestamp_ns, self.store.serialize_cdr(msg, conn.msgtype))


def _to_humble_layout(path: Path) -> None:
    """Rewrite a bag just written at version 8 as Humble records it: metadata 5, no definitions in sqlite3."""
    meta_path = path / "metadata.yaml"
    doc = yaml.safe_load(meta_path.read_text())
    info = doc["rosbag2_bagfile_information"]
    info["version"] = 5
    for key in ("custom_data", "ros_distro"):
        info.pop(key, None)
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash", None)
    if info["storage_identifier"] == "sqlite3":
        with closing(sqlite3.connect(path / info["relative_file_paths"][0])) as con:
            con.executescript("DROP TABLE message_definitions; ALTER TABLE topics DROP COLUMN type_description_hash;"
                              "UPDATE schema SET schema_version = 3, ros_distro = 'humble';")
            con.execute("UPDATE metadata SET metadata_version = 5, metadata = ?", (yaml.safe_dump(info),))
            con.commit()
    meta_path.write_text(yaml.safe_dump(doc, sort_keys=False))

