"""Model files that describe themselves: metadata and an integrity checksum for every format.

Each file carries the checkpoint metadata (arch, classes, input_size, in_channels,
normalization) and a sha256, so a backend needs only a path:

- ``.pt``: `fer_ros.learning.checkpoint` (metadata + sha256 of the state dict, inside the file).
- ``.onnx``: two ``metadata_props`` entries, ``fer_ros.metadata`` (JSON) and ``fer_ros.sha256``.
  The digest is the sha256 of the file's own bytes with the digest's 64 hex characters
  written as ``0`` * 64 ("sealed"): sealing swaps equal-length ASCII inside a protobuf string,
  so no length field changes, and checking needs only hashlib -- neither the onnx package nor
  a protobuf parser -- while covering the graph, the weights and the metadata alike.
  onnxruntime reads the props (``get_modelmeta().custom_metadata_map``).
- ``.engine`` / ``.plan`` (TensorRT): a JSON sidecar ``<file>.json`` with the metadata, the
  sha256 of the engine bytes and the TensorRT version that built it.
"""

import hashlib
import json
import math
from pathlib import Path

from .errors import ModelFileError
from .preprocess import NORMALIZATION

REQUIRED_METADATA = ("arch", "classes", "input_size", "in_channels", "normalization")
SUFFIXES = {".pt": "pt", ".pth": "pt", ".onnx": "onnx", ".engine": "engine", ".plan": "engine"}
META_KEY = "fer_ros.metadata"
SHA_KEY = "fer_ros.sha256"
PLACEHOLDER = "0" * 64
ENGINE_FORMAT = "fer_ros.engine/1"


def kind(path: str | Path) -> str:
    """"pt", "onnx" or "engine", from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelFileError(f"{path}: unknown model file type {suffix!r} (use .pt, .onnx, .engine or .plan)")
    return SUFFIXES[suffix]


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    data = path.read_bytes()
    if not data:
        raise ModelFileError(f"{path}: the model file is empty")
    return data


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_metadata(meta, path: str | Path) -> dict:
    """Validate metadata against this package (normalization, types); return it with classes as a tuple."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: model metadata is not a mapping")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: model metadata lacks {missing}")
    classes = meta["classes"]
    if (not isinstance(classes, (list, tuple)) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise ModelFileError(f"{path}: model metadata has bad classes {classes!r} (want distinct names)")
    for key in ("input_size", "in_channels"):
        if not isinstance(meta[key], int) or meta[key] < 1:
            raise ModelFileError(f"{path}: model metadata has bad {key} {meta[key]!r}")
    norm = meta["normalization"]
    try:
        same = all(math.isclose(float(norm[k]), v, abs_tol=1e-6) for k, v in NORMALIZATION.items())
    except (KeyError, TypeError, ValueError):
        same = False
    if not same:
        raise ModelFileError(f"{path}: the model expects input normalization {norm!r} but fer_ros.preprocess "
                             f"uses {NORMALIZATION}; retrain or export a model made with this version")
    return {**meta, "classes": tuple(classes)}


def check_io(meta: dict, input_shape, output_shape, path: str | Path) -> None:
    """Check a graph's (batch, C, H, W) input and (batch, n_classes) output against the metadata.

    Dynamic dimensions (strings, None or -1) pass.
    """
    def fixed(d):
        return isinstance(d, int) and d >= 0

    want_in = (meta["in_channels"], meta["input_size"], meta["input_size"])
    if len(input_shape) != 4 or any(fixed(g) and g != w for g, w in zip(input_shape[1:], want_in, strict=True)):
        raise ModelFileError(f"{path}: graph input shape {list(input_shape)} does not match the metadata "
                             f"(batch, {want_in[0]}, {want_in[1]}, {want_in[2]})")
    n = len(meta["classes"])
    if len(output_shape) != 2 or (fixed(output_shape[1]) and output_shape[1] != n):
        raise ModelFileError(f"{path}: graph output shape {list(output_shape)} does not match the "
                             f"{n} classes in the metadata")


# ---- ONNX -------------------------------------------------------------------------------------

def onnx_bytes(model, metadata: dict) -> bytes:
    """Serialize an ``onnx.ModelProto`` with `metadata` embedded (in place) and the checksum sealed."""
    for prop in [p for p in model.metadata_props if p.key in (META_KEY, SHA_KEY)]:
        model.metadata_props.remove(prop)
    meta = {**metadata, "classes": list(metadata["classes"])}
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta, sort_keys=True))
    model.metadata_props.add(key=SHA_KEY, value=PLACEHOLDER)
    data = model.SerializeToString()
    if data.count(PLACEHOLDER.encode()) != 1:
        raise ValueError("cannot seal the ONNX file: the checksum placeholder is not unique in it")
    return data.replace(PLACEHOLDER.encode(), sha256(data).encode())


def verify_onnx(data: bytes, props: dict, path: str | Path) -> dict:
    """Check the sealed checksum of ONNX bytes and return the validated metadata from its props."""
    if META_KEY not in props or SHA_KEY not in props:
        raise ModelFileError(f"{path}: the ONNX file has no fer_ros metadata; make it with `fer-ros export`")
    digest = props[SHA_KEY].encode()
    if len(digest) != 64 or data.count(digest) != 1:
        raise ModelFileError(f"{path}: the ONNX checksum entry is malformed; the file is corrupt")
    if sha256(data.replace(digest, PLACEHOLDER.encode())) != props[SHA_KEY]:
        raise ModelFileError(f"{path}: checksum mismatch, the ONNX file is corrupt or was modified")
    try:
        meta = json.loads(props[META_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: the ONNX metadata is not JSON ({e})") from None
    return check_metadata(meta, path)


def open_onnx(path: str | Path, options=None, providers=None):
    """(onnxruntime session, verified metadata) for a fer_ros ONNX file."""
    import onnxruntime as ort

    data = read_bytes(path)
    try:
        session = ort.InferenceSession(data, options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException types
        raise ModelFileError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {e})") from None
    meta = verify_onnx(data, session.get_modelmeta().custom_metadata_map, path)
    check_io(meta, session.get_inputs()[0].shape, session.get_outputs()[0].shape, path)
    return session, meta


# ---- TensorRT engines ---------------------------------------------------------------------------

def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, engine: bytes, metadata: dict, **info) -> Path:
    """Write ``<engine>.json``: metadata, the engine's sha256 and `info` (tensorrt version, precision...)."""
    side = {"format": ENGINE_FORMAT, "metadata": {**metadata, "classes": list(metadata["classes"])},
            "sha256": sha256(engine), **info}
    path = sidecar_path(engine_path)
    write_atomic(path, json.dumps(side, indent=1, sort_keys=True).encode())
    return path


def read_engine(path: str | Path) -> tuple[bytes, dict, dict]:
    """(engine bytes, validated metadata, whole sidecar) after checking the engine against its sidecar."""
    data = read_bytes(path)
    side_path = sidecar_path(path)
    if not side_path.is_file():
        raise ModelFileError(f"{path}: its metadata sidecar {side_path.name} is missing; write it with "
                             f"`fer-ros export MODEL.onnx --format tensorrt --from-engine {path}`")
    try:
        side = json.loads(side_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{side_path}: not a JSON sidecar ({e})") from None
    if not isinstance(side, dict) or side.get("format") != ENGINE_FORMAT:
        raise ModelFileError(f"{side_path}: not a fer_ros engine sidecar (format {ENGINE_FORMAT} expected)")
    if side.get("sha256") != sha256(data):
        raise ModelFileError(f"{path}: checksum mismatch with {side_path.name}; the engine is corrupt or "
                             "does not belong to this sidecar")
    return data, check_metadata(side.get("metadata"), path), side


CHECKPOINT_FORMAT = "fer_ros.checkpoint/1"


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a torch state dict's parameter names, shapes, dtypes and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Read and verify a fer_ros PyTorch checkpoint (torch.load with weights_only=True); ModelFileError naming
    the file on any problem. Writing one, and building its model, is `fer_ros.learning.checkpoint`'s job."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not a fer_ros checkpoint (format {CHECKPOINT_FORMAT} expected)")
    missing = [k for k in REQUIRED_METADATA if k not in blob["metadata"]]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {missing}")
    if state_dict_sha256(blob["state_dict"]) != blob["sha256"]:
        raise ModelFileError(f"{path}: checksum mismatch, the weights are corrupt")
    return blob


def read_metadata(path: str | Path) -> dict:
    """The validated metadata of any model file (a .pt needs torch, an .onnx onnxruntime)."""
    k = kind(path)
    if k == "pt":
        return check_metadata(read_checkpoint(path)["metadata"], path)
    if k == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return open_onnx(path, options)[1]
    return read_engine(path)[1]
