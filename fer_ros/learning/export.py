"""`fer-ros export`: a checkpoint to ONNX, int8 ONNX or a TensorRT engine, each verified before it is kept.

- ``onnx``: `Classifier` (softmax inside the graph) with a dynamic batch, input ``input``, output
  ``probabilities`` and the metadata sealed in (`fer_ros.modelfile`). Opset 17 (the default) uses
  torch's TorchScript exporter and gives IR 8, which TensorRT 8.5+ and onnxruntime 1.14+ read;
  opset 18+ uses the torch.export-based exporter (TensorRT 10+).
- ``onnx-int8``: static QDQ quantization with onnxruntime, calibrated on real crops (--calib-data),
  with its accuracy change on held-out crops of the same split.
- ``tensorrt``: an FP16 engine (``--int8``: explicit quantization from a symmetric QDQ ONNX) with
  its JSON sidecar, built the way the installed TensorRT wants (`build_plan`: 8.6, 10.x, 11+);
  the matching ``trtexec`` command is printed too.

Every output is written to a temp file, loaded back through `fer_ros.inference` and compared
with its source (ONNX vs PyTorch: max |diff| <= 1e-4) before it is renamed into place.
"""

import argparse
import contextlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import modelfile
from ..cli import check_output, number
from ..errors import FerRosError, FerRosWarning
from ..inference import TRT_EP_BATCH, OnnxRuntimeBackend, TensorRTBackend, trt_logger
from ..preprocess import to_input

FORMATS = ("onnx", "onnx-int8", "tensorrt")
DEFAULT_OPSET = 17
TOLERANCE = 1e-4  # ONNX vs PyTorch, max abs difference of probabilities
FP16_TOLERANCE = 1e-2  # TensorRT FP16 engine vs ONNX Runtime
VERIFY_BATCHES = (1, 7, 32)


def sample_inputs(meta: dict, batches=VERIFY_BATCHES, seed: int = 0) -> list[np.ndarray]:
    """Random grey crops through `to_input`, one array per batch size."""
    rng = np.random.default_rng(seed)
    size = meta["input_size"]
    return [to_input(rng.integers(0, 256, (n, size, size), dtype=np.uint8), size) for n in batches]


def _temp_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.tmp{out.suffix}")


@contextlib.contextmanager
def _quiet():
    """Silence torch.onnx's deprecation warnings and exporter log lines."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def torch_to_onnx(net, example, opset: int = DEFAULT_OPSET):
    """``onnx.ModelProto`` of `net` with a dynamic batch (TorchScript exporter below opset 18)."""
    import io

    import onnx
    import torch

    names = {"input_names": ["input"], "output_names": ["probabilities"], "opset_version": opset}
    with _quiet():
        if opset >= 18:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(net, (example,), dynamo=True, verbose=False,
                                        dynamic_shapes=({0: batch},), **names)
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(net, (example,), buf, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}}, **names)
    return onnx.load_from_string(buf.getvalue())


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = DEFAULT_OPSET) -> dict:
    """Checkpoint -> verified ONNX with embedded metadata; returns a report."""
    import torch

    from .checkpoint import load_model
    from .models import Classifier

    if opset < 17:
        raise FerRosError(f"opset {opset} is too old: use 17 or newer")
    checkpoint, out = Path(checkpoint), Path(out)
    model, meta = load_model(checkpoint)
    meta = modelfile.check_metadata(meta, checkpoint)
    net = Classifier(model).eval()
    size = meta["input_size"]
    proto = torch_to_onnx(net, torch.zeros(2, meta["in_channels"], size, size), opset)
    data = modelfile.onnx_bytes(proto, {**meta, "source": checkpoint.name, "opset": opset})

    def reference(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    diff = _write_verified(out, data, OnnxRuntimeBackend, reference, sample_inputs(meta), TOLERANCE,
                           "onnxruntime vs PyTorch")
    return {"path": str(out), "opset": opset, "bytes": len(data), "max_abs_diff": diff,
            "batches": list(VERIFY_BATCHES)}


def _write_verified(out: Path, data: bytes, load, reference, inputs: list[np.ndarray], tolerance: float | None,
                    what: str, sidecar: dict | None = None) -> float:
    """Write `data` to a temp file (and engine sidecar), compare load(temp) with `reference`, then rename."""
    tmp = _temp_path(out)
    try:
        tmp.write_bytes(data)
        if sidecar is not None:
            modelfile.write_sidecar(tmp, data, **sidecar)
        backend = load(tmp)
        diff = max(float(np.abs(backend.predict(x) - reference(x)).max()) for x in inputs)
        if tolerance is not None and not diff <= tolerance:
            raise FerRosError(f"{out}: {what} differ by {diff:.2g} > {tolerance:g}; the export is wrong, "
                              "nothing was written")
        if sidecar is not None:
            modelfile.write_sidecar(out, data, **sidecar)
        tmp.replace(out)
        return diff
    finally:
        tmp.unlink(missing_ok=True)
        modelfile.sidecar_path(tmp).unlink(missing_ok=True)


# ---- int8 ---------------------------------------------------------------------------------------

def compare(reference, candidate, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Top-1 agreement, max |prob diff| and (with labels) both accuracies of two backends on crops."""
    from .evaluate import predict

    p_ref, p_new = predict(reference, images), predict(candidate, images)
    report = {"n": len(images), "agreement": float((p_ref.argmax(1) == p_new.argmax(1)).mean()),
              "max_abs_diff": float(np.abs(p_ref - p_new).max())}
    if labels is not None:
        report["accuracy_before"] = float((p_ref.argmax(1) == labels).mean())
        report["accuracy_after"] = float((p_new.argmax(1) == labels).mean())
    return report


def model_precision(meta: dict) -> str:
    """What a fer_ros ONNX holds: "int8" (Q/DQ nodes), "fp16" (`float16_onnx`) or "fp32"."""
    return "int8" if "quantization" in meta else meta.get("precision", "fp32")


def _float32_model(src: Path, what: str) -> OnnxRuntimeBackend:
    """The float32 fer_ros ONNX `src`, loaded as the source of `what`; an int8 or FP16 one is refused."""
    backend = OnnxRuntimeBackend(src)
    holds = model_precision(backend.metadata)
    if holds != "fp32":
        raise FerRosError(f"{src}: {what} starts from a float32 ONNX, not an {holds} one")
    return backend


def float_nodes(proto) -> list[str]:
    """Nodes the TensorRT-target int8 graph keeps in float.

    Those that read the graph input (symmetric int8 keeps only 128 of the 256 grey levels of a
    crop scaled to [0, 1]) and Softmax (TensorRT has no int8 Softmax, and a quantized output would
    come in steps of 1/127).
    """
    inputs = {i.name for i in proto.graph.input}
    return [n.name for n in proto.graph.node if n.op_type == "Softmax" or inputs.intersection(n.input)]


def quantize_onnx(src: str | Path, out: str | Path, calib: np.ndarray, target: str = "cpu",
                  evaluation: tuple[np.ndarray, np.ndarray | None] | None = None, calib_source: str = "") -> dict:
    """Static int8 QDQ quantization of a fer_ros ONNX, calibrated on uint8 crops (N, H, W).

    target "cpu": uint8 activations, int8 per-channel weights (onnxruntime's fast path).
    target "tensorrt": symmetric int8 activations and weights, float weights and biases behind
    Q/DQ pairs, which TensorRT builds as an explicitly quantized engine; `float_nodes` stay float.
    `evaluation` = (crops, labels or None) compares the result with the float model on held-out
    crops; `calib_source` is recorded in the metadata.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(src), Path(out)
    if target not in ("cpu", "tensorrt"):
        raise ValueError(f"unknown quantization target {target!r}")
    fp32 = _float32_model(src, "int8 quantization")
    if not len(calib):
        raise FerRosError("int8 calibration needs at least one crop")

    class Reader(CalibrationDataReader):
        def __init__(self, batch: int = 64):
            starts = range(0, len(calib), batch)
            self.batches = iter(tqdm([to_input(calib[i:i + batch], fp32.input_size) for i in starts],
                                     desc="calibrating", unit="batch", leave=False))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {fp32.input_name: x}

    options = {"activation_type": QuantType.QUInt8, "extra_options": {}}
    if target == "tensorrt":
        options = {"activation_type": QuantType.QInt8, "extra_options": {
            "ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True, "DedicatedQDQPair": True,
            "QuantizeBias": False}}
    with tempfile.TemporaryDirectory() as d:
        pre, quantized = Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if target == "tensorrt":
            options["nodes_to_exclude"] = float_nodes(onnx.load(str(pre)))
        quantize_static(str(pre), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, **options)
        proto = onnx.load(str(quantized))
    quant = {"format": "QDQ", "target": target, "calibration": calib_source, "calibration_crops": len(calib),
             "activations": "int8 symmetric" if target == "tensorrt" else "uint8"}
    data = modelfile.onnx_bytes(proto, {**fp32.metadata, "quantization": quant, "source": src.name})
    _write_verified(out, data, OnnxRuntimeBackend, fp32.predict, sample_inputs(fp32.metadata), None, "int8 vs float")
    report = {"path": str(out), "bytes": len(data), **quant}
    if evaluation is not None:
        report.update(compare(fp32, OnnxRuntimeBackend(out), *evaluation))
    return report


def calibration_data(path: str | Path, split: str | None, calib_size: int, eval_size: int, classes: tuple,
                     seed: int = 0) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]:
    """Disjoint random calibration crops and evaluation (crops, labels) from a dataset split.

    Labels are None when the dataset's classes differ from the model's.
    """
    from .data import load_dataset

    data = load_dataset(path, split)
    order = np.random.default_rng(seed).permutation(len(data))
    calib, held = order[:calib_size], order[calib_size:calib_size + eval_size]
    labels = data.labels[held] if tuple(data.classes) == tuple(classes) else None
    return data.images[calib], (data.images[held], labels)


# ---- TensorRT -----------------------------------------------------------------------------------

#: the trtexec lines printed when TensorRT is not installed here: (versions, one of them, has precision flags)
TENSORRT_FAMILIES = (("8.6-10.11", "8.6", True), ("10.12-10.x", "10.12", True), ("11+", "11.0", False))


@dataclass(frozen=True)
class BuildPlan:
    """How one TensorRT version builds a model: network and builder flags, and the trtexec flags that match."""

    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...]  # BuilderFlag names
    trtexec_flags: tuple[str, ...]
    precision: str  # what the engine computes in: fp32, fp16 or int8 (where the Q/DQ nodes are)


def build_plan(version: str, precision_flags: bool, model: str) -> BuildPlan:
    """The build path of TensorRT `version` for a model of `model_precision` `model`.

    Where the FP16/INT8 builder flags exist they are set, except that a Q/DQ model is built as a
    strongly typed network from 10.12 on, where the flags are deprecated. TensorRT 11 removed them:
    every network is strongly typed and runs in the types of the ONNX, so FP16 needs an FP16 ONNX.
    """
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if not precision_flags:
        return BuildPlan((), (), (), model)
    if model == "int8" and major_minor >= (10, 12):
        return BuildPlan(("STRONGLY_TYPED",), (), ("--stronglyTyped",), "int8")
    network = ("EXPLICIT_BATCH",) if major_minor < (10, 0) else ()  # implied from TensorRT 10 on
    flags = ("FP16", "INT8") if model == "int8" else ("FP16",)
    return BuildPlan(network, flags, tuple(f"--{f.lower()}" for f in flags), "int8" if model == "int8" else "fp16")


def plan_for(trt, model: str) -> BuildPlan:
    """`build_plan` for a tensorrt module: its version, and whether it still has BuilderFlag.FP16."""
    return build_plan(trt.__version__, hasattr(trt.BuilderFlag, "FP16"), model)


def check_batch(batch) -> tuple[int, int, int]:
    """The (min, opt, max) batch of an optimization profile; min must be 1, or single-face frames fail."""
    lo, opt, hi = batch
    if lo != 1 or not lo <= opt <= hi:
        raise FerRosError(f"--batch {lo} {opt} {hi}: MIN must be 1, so that a frame with one face runs, "
                          "and MIN <= OPT <= MAX")
    return lo, opt, hi


def trtexec_command(onnx_path: str | Path, engine: str | Path, meta: dict, plan: BuildPlan,
                    workspace_mib: int = 1024, batch=TRT_EP_BATCH) -> str:
    """The trtexec command line that builds the same engine as `plan`."""
    shape = f"{meta['in_channels']}x{meta['input_size']}x{meta['input_size']}"
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", *plan.trtexec_flags,
             *(f"--{k}Shapes=input:{b}x{shape}" for k, b in zip(("min", "opt", "max"), batch, strict=True)),
             f"--memPoolSize=workspace:{workspace_mib}"]
    return " ".join(parts)


def float16_onnx(src: str | Path, out: str | Path) -> dict:
    """FP16 copy of a float32 fer_ros ONNX, with float32 input and output, verified against it.

    For strongly typed TensorRT (11+), which has no FP16 flag and runs each layer in the ONNX's type.
    """
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise FerRosError("converting the model to FP16 for TensorRT 11+ needs the onnx package: "
                          "pip install onnx") from None
    src, out = Path(src), Path(out)
    fp32 = _float32_model(src, "FP16 conversion")
    proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    data = modelfile.onnx_bytes(proto, {**fp32.metadata, "precision": "fp16", "source": src.name})
    diff = _write_verified(out, data, OnnxRuntimeBackend, fp32.predict, sample_inputs(fp32.metadata),
                           FP16_TOLERANCE, "FP16 vs float32")
    return {"path": str(out), "bytes": len(data), "max_abs_diff": diff}


def _tensorrt_module():
    """The tensorrt module, or None where it is not installed."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


def _tensorrt(engine: str | Path = "ENGINE"):
    trt = _tensorrt_module()
    if trt is None:
        raise FerRosError("TensorRT's Python module is not installed: build the engine with the trtexec command "
                          f"above, then run this command again with --from-engine {engine} to write its sidecar")
    return trt


def build_engine(onnx_path: str | Path, out: str | Path, int8: bool = False, workspace_mib: int = 1024,
                 batch=TRT_EP_BATCH) -> dict:
    """ONNX -> serialized TensorRT engine with its sidecar, verified against onnxruntime.

    The precision follows the ONNX and the installed TensorRT (`plan_for`): int8 needs a Q/DQ ONNX
    quantized for TensorRT; an fp32 ONNX gives FP16, or FP32 on TensorRT 11+ (give it the
    `float16_onnx` copy for FP16). The report and the sidecar say which.
    """
    batch = check_batch(batch)
    onnx_path, out = Path(onnx_path), Path(out)
    reference = OnnxRuntimeBackend(onnx_path)
    meta = reference.metadata
    quantized = meta.get("quantization", {}).get("target")
    if quantized not in (None, "tensorrt"):
        raise FerRosError(f"{onnx_path} was quantized for the {quantized} (asymmetric int8); for TensorRT pass "
                          "the float ONNX with --int8")
    model = model_precision(meta)
    if int8 and model != "int8":
        raise FerRosError(f"{onnx_path}: an int8 engine needs an ONNX quantized for TensorRT (Q/DQ nodes), not an "
                          f"{model} one: `fer-ros export {onnx_path} --format tensorrt --int8 --calib-data DATA`")
    trt = _tensorrt(out)
    plan = plan_for(trt, model)
    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(sum(1 << int(getattr(trt.NetworkDefinitionCreationFlag, f))
                                         for f in plan.network_flags))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(modelfile.read_bytes(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FerRosError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    c, s = meta["in_channels"], meta["input_size"]
    profile.set_shape("input", *[(b, c, s, s) for b in batch])
    if config.add_optimization_profile(profile) < 0:
        raise FerRosError(f"{onnx_path}: TensorRT rejected the optimization profile of batch {batch}")
    plan_bytes = builder.build_serialized_network(network, config)
    if plan_bytes is None:
        raise FerRosError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    engine = bytes(plan_bytes)
    sidecar = {"metadata": {**meta, "source": onnx_path.name}, "tensorrt": trt.__version__,
               "precision": plan.precision, "batch": list(batch)}
    diff = _write_verified(out, engine, TensorRTBackend, reference.predict, sample_inputs(meta, batch),
                           None if model == "int8" else FP16_TOLERANCE, "TensorRT vs onnxruntime", sidecar)
    return {"path": str(out), "bytes": len(engine), "tensorrt": trt.__version__, "precision": plan.precision,
            "max_abs_diff": diff}


def write_engine_sidecar(onnx_path: str | Path, engine: str | Path) -> Path:
    """Write the sidecar of an engine built elsewhere (e.g. by trtexec) from the ONNX it was built from."""
    meta = modelfile.read_metadata(onnx_path)
    model, trt = model_precision(meta), _tensorrt_module()
    if trt is not None:
        version, precision = trt.__version__, plan_for(trt, model).precision
    else:
        version = "unknown (built outside fer-ros)"
        precision = "fp16 with trtexec --fp16, else fp32" if model == "fp32" else model
    return modelfile.write_sidecar(engine, modelfile.read_bytes(engine), {**meta, "source": Path(onnx_path).name},
                                   tensorrt=version, precision=precision)


# ---- command line -------------------------------------------------------------------------------

EXAMPLES = """examples:
  fer-ros export runs/arch1/best.pt                      # -> runs/arch1/best.onnx
  fer-ros export best.onnx --format onnx-int8 --calib-data fer2013.csv.gz
  fer-ros export best.onnx --format tensorrt             # on the Jetson / GPU machine itself
  fer-ros export best.onnx --format tensorrt --int8 --calib-data fer2013.csv.gz
  fer-ros export best.onnx --format tensorrt --trtexec  # no TensorRT here: the trtexec lines
  fer-ros export best.onnx --format tensorrt --from-engine best.engine   # after trtexec"""


def add_arguments(p):
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model", help="a .pt checkpoint; for onnx-int8 and tensorrt also an .onnx made by fer-ros export")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file (default: MODEL with .onnx, .int8.onnx or .engine)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="what to make (default: %(default)s)")
    p.add_argument("--opset", type=number(int, 17), default=DEFAULT_OPSET, metavar="N",
                   help="ONNX opset: 17 also loads in TensorRT 8.5/8.6; 18+ uses torch's new exporter "
                        "(default: %(default)s)")
    c = p.add_argument_group("int8 calibration (onnx-int8, tensorrt --int8)")
    c.add_argument("--calib-data", metavar="PATH", help="FER2013 CSV(.gz) or image folder of real face crops")
    c.add_argument("--calib-split", metavar="SPLIT", default="PublicTest",
                   help="FER2013 split to draw crops from (default: %(default)s)")
    c.add_argument("--calib-size", type=number(int, 1), default=1000, metavar="N",
                   help="crops to calibrate on (default: %(default)s)")
    c.add_argument("--eval-size", type=number(int, 0), default=2000, metavar="N",
                   help="other crops of the split to measure the accuracy change on (default: %(default)s)")
    t = p.add_argument_group("TensorRT")
    t.add_argument("--int8", action="store_true", help="INT8 engine via a symmetric QDQ ONNX (needs --calib-data)")
    t.add_argument("--workspace", type=number(int, 1), default=1024, metavar="MIB",
                   help="builder workspace in MiB (default: %(default)s)")
    t.add_argument("--batch", type=number(int, 1), nargs=3, default=list(TRT_EP_BATCH), metavar=("MIN", "OPT", "MAX"),
                   help="batch sizes of the optimization profile (default: 1 8 32)")
    t.add_argument("--from-engine", metavar="ENGINE",
                   help="do not build: write the sidecar of ENGINE (.engine/.plan), built from MODEL by trtexec")
    t.add_argument("--trtexec", action="store_true",
                   help="do not build: write the ONNX files trtexec builds from and print its command lines (where "
                        "TensorRT's Python module is not installed)")


def _default_output(model: Path, fmt: str, int8: bool) -> Path:
    stem = model.name[: -len(model.suffix)] if model.suffix else model.name
    suffix = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "tensorrt": ".int8.engine" if int8 else ".engine"}[fmt]
    return model.with_name(stem + suffix)


def _calibration(args, classes):
    """(calibration crops, evaluation) as asked, or FerRosError before anything is written."""
    if not args.calib_data:
        raise FerRosError("int8 needs real face crops to calibrate on: pass --calib-data fer2013.csv.gz "
                          "[--calib-split PublicTest]")
    calib, (held, labels) = calibration_data(args.calib_data, args.calib_split, args.calib_size, args.eval_size,
                                             classes)
    if len(calib) < args.calib_size:
        raise FerRosError(f"--calib-size {args.calib_size}: {args.calib_data}"
                          f"{f' ({args.calib_split})' if args.calib_split else ''} has only {len(calib)} crops; "
                          f"pass --calib-size {len(calib)} or less (or more data); nothing was written")
    if len(held) < args.eval_size:
        warnings.warn(FerRosWarning(f"--eval-size {args.eval_size}: only {len(held)} crops are left after the "
                                    f"{len(calib)} calibration crops; the accuracy change is measured on those"
                                    if len(held) else "no crops are left after calibration: the accuracy change "
                                    "is not measured (lower --calib-size or give more data)"), stacklevel=2)
    return calib, ((held, labels) if len(held) else None)


def _outputs(args, model: Path, out: Path, source: str) -> list[Path]:
    """Every file this export may write, each checked (`cli.check_output`: never an input, a writable place)."""
    paths = [] if args.from_engine else [(out, "model")]  # with --from-engine, -o only names it in trtexec lines
    if args.format == "tensorrt":
        if source == "pt":
            paths.append((out.with_name(out.stem.removesuffix(".int8") + ".onnx"), "model"))
        if args.int8:
            paths.append((out.with_name(out.stem + ".qdq.onnx"), "model"))
        paths += [(out.with_name(out.stem + ".fp16.onnx"), "model"),
                  (modelfile.sidecar_path(Path(args.from_engine) if args.from_engine else out), "json")]
    inputs = [model, args.calib_data, args.from_engine]
    for path, kind in paths:
        check_output(path, "-o" if path == out else f"-o {out} (it also writes {path.name})", kind, inputs)
    return [path for path, _ in paths]


def _check_options(args) -> None:
    """Options that the chosen format would silently ignore are refused."""
    tensorrt_only = [o for o, v in (("--int8", args.int8), ("--from-engine", args.from_engine),
                                    ("--trtexec", args.trtexec)) if v]
    if args.format != "tensorrt" and tensorrt_only:
        raise FerRosError(f"{', '.join(tensorrt_only)}: only with --format tensorrt"
                          + ("; for an int8 ONNX use --format onnx-int8" if args.int8 else ""))
    if args.calib_data and not (args.format == "onnx-int8" or args.int8):
        raise FerRosError("--calib-data: only for int8 (--format onnx-int8, or --format tensorrt --int8)")
    if args.from_engine and args.trtexec:
        raise FerRosError("--from-engine and --trtexec: give one (--trtexec prints how to build ENGINE, "
                          "--from-engine writes its sidecar afterwards)")
    if args.from_engine and modelfile.kind(args.from_engine) != "engine":
        raise FerRosError(f"--from-engine {args.from_engine}: give the engine trtexec built (.engine or .plan), "
                          f"not the {modelfile.kind(args.from_engine)} model it was built from")


def _print_comparison(r: dict) -> None:
    line = f"  on {r['n']} held-out crops: top-1 agreement {r['agreement']:.2%}, max |diff| {r['max_abs_diff']:.3g}"
    if "accuracy_before" in r:
        line += (f", accuracy {r['accuracy_before']:.2%} -> {r['accuracy_after']:.2%} "
                 f"({r['accuracy_after'] - r['accuracy_before']:+.2%})")
    print(line)


def run(args) -> int:
    model = Path(args.model)
    source = modelfile.kind(model)
    _check_options(args)
    if source == "engine" or (args.format == "onnx" and source != "pt"):
        raise FerRosError(f"{model}: --format {args.format} starts from a .pt checkpoint"
                          + ("" if args.format == "onnx" else " or an .onnx file"))
    out = Path(args.output) if args.output else _default_output(model, args.format, args.int8)
    if args.format == "tensorrt" and modelfile.kind(out) != "engine":
        raise FerRosError(f"{out}: a TensorRT engine needs an .engine or .plan name")
    if args.format != "tensorrt" and modelfile.kind(out) != "onnx":
        raise FerRosError(f"{out}: the output of --format {args.format} needs an .onnx name")
    if args.format == "tensorrt":
        check_batch(args.batch)
        if not (args.from_engine or args.trtexec) and _tensorrt_module() is None:
            raise FerRosError("TensorRT's Python module is not installed here, so no engine can be built; nothing "
                              "was written. Run this on the target, or add --trtexec to write the ONNX trtexec "
                              "builds from and print its command line (then --from-engine ENGINE writes the "
                              "engine's sidecar)")
    outputs = _outputs(args, model, out, source)
    existed = {p for p in outputs if p.exists()}
    calib = None
    if args.format == "onnx-int8" or args.int8:  # the crops first: a shortage stops the export before any file
        calib = _calibration(args, modelfile.read_metadata(model)["classes"])
    try:
        return _export(args, model, out, source, calib)
    except BaseException:  # all or nothing: the files this run wrote go with it
        for path in outputs:
            if path not in existed:
                path.unlink(missing_ok=True)
        raise


def _export(args, model: Path, out: Path, source: str, calib) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = model
        if source == "pt":  # the float ONNX: the result, kept beside the engine for trtexec, or temporary
            onnx_path = {"onnx": out, "tensorrt": out.with_name(out.stem.removesuffix(".int8") + ".onnx"),
                         "onnx-int8": Path(tmp) / "fp32.onnx"}[args.format]
            r = export_onnx(model, onnx_path, args.opset)
            print(f"wrote {onnx_path} (opset {r['opset']}, {r['bytes'] / 1e6:.2f} MB): max |onnxruntime - torch| "
                  f"= {r['max_abs_diff']:.2g} over batches {', '.join(map(str, r['batches']))}")
        if args.format == "onnx":
            return 0
        int8 = calib is not None
        if int8:
            crops, evaluation = calib
            target = "tensorrt" if args.format == "tensorrt" else "cpu"
            q_out = out if args.format == "onnx-int8" else out.with_name(out.stem + ".qdq.onnx")
            r = quantize_onnx(onnx_path, q_out, crops, target, evaluation,
                              f"{Path(args.calib_data).name}:{args.calib_split}")
            print(f"wrote {q_out} (int8 QDQ for {target}, {r['bytes'] / 1e6:.2f} MB, calibrated on {len(crops)} crops)")
            if evaluation is not None:
                _print_comparison(r)
            onnx_path = q_out
        if args.format == "onnx-int8":
            return 0
        meta = modelfile.read_metadata(onnx_path)
        model_kind, trt = model_precision(meta), _tensorrt_module()
        families = TENSORRT_FAMILIES if trt is None else [(trt.__version__, trt.__version__,
                                                           hasattr(trt.BuilderFlag, "FP16"))]
        lines = {}
        for versions, version, flags in families:
            build_from, plan = onnx_path, build_plan(version, flags, model_kind)
            if plan.precision == "fp32":  # TensorRT 11+ has no FP16 flag: build from an FP16 copy
                build_from = out.with_name(out.stem + ".fp16.onnx")
                r = float16_onnx(onnx_path, build_from)
                print(f"wrote {build_from} (FP16 with float32 input and output, for TensorRT 11+): "
                      f"max |FP16 - float32| = {r['max_abs_diff']:.2g}")
                plan = build_plan(version, flags, "fp16")
            lines.setdefault(trtexec_command(build_from, out, meta, plan, args.workspace, args.batch), []).append(
                versions)
        print("trtexec equivalent" + (" (TensorRT is not installed here: pick the line of the target's version)"
                                      if trt is None else "") + ":")
        for line, versions in lines.items():
            print(f"  TensorRT {', '.join(versions)}: {line}")
        if args.from_engine:  # every line printed makes an FP16 (or int8) engine: so says the sidecar
            side = write_engine_sidecar(build_from, args.from_engine)
            print(f"wrote {side}")
            return 0
        if args.trtexec:
            return 0
        _tensorrt(out)
        print("building the TensorRT engine (a minute or more)...")
        r = build_engine(build_from, out, int8, args.workspace, tuple(args.batch))
        print(f"wrote {out} and {modelfile.sidecar_path(out).name} (TensorRT {r['tensorrt']}, {r['precision']}, "
              f"{r['bytes'] / 1e6:.2f} MB): max |TensorRT - onnxruntime| = {r['max_abs_diff']:.2g}")
    return 0
