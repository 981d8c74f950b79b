"""`fer-ros export`: a checkpoint to ONNX, int8 ONNX or a TensorRT engine, each verified before it is kept.

- ``onnx``: `Classifier` (softmax inside the graph) with a dynamic batch, input ``input``, output
  ``probabilities`` and the metadata sealed in (`fer_ros.modelfile`). Opset 17 (the default) uses
  torch's TorchScript exporter and gives IR 8, which TensorRT 8.5+ and onnxruntime 1.14+ read;
  opset 18+ uses the torch.export-based exporter (TensorRT 10+).
- ``onnx-int8``: static QDQ quantization with onnxruntime, calibrated on real crops (--calib-data),
  with its accuracy change on held-out crops of the same split.
- ``tensorrt``: an FP16 engine (``--int8``: explicit quantization from a symmetric QDQ ONNX) with
  its JSON sidecar; the equivalent ``trtexec`` command is printed too.

Every output is written to a temp file, loaded back through `fer_ros.inference` and compared
with its source (ONNX vs PyTorch: max |diff| <= 1e-4) before it is renamed into place.
"""

import argparse
import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import modelfile
from .errors import FerRosError
from .inference import TRT_EP_BATCH, OnnxRuntimeBackend, TensorRTBackend
from .preprocess import to_input

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


def quantize_onnx(src: str | Path, out: str | Path, calib: np.ndarray, target: str = "cpu",
                  evaluation: tuple[np.ndarray, np.ndarray | None] | None = None, calib_source: str = "") -> dict:
    """Static int8 QDQ quantization of a fer_ros ONNX, calibrated on uint8 crops (N, H, W).

    target "cpu": uint8 activations, int8 per-channel weights (onnxruntime's fast path).
    target "tensorrt": symmetric int8 activations and weights, float weights and biases behind
    Q/DQ pairs, which TensorRT builds as an explicitly quantized engine. `evaluation` = (crops,
    labels or None) compares the result with the float model on held-out crops; `calib_source`
    is recorded in the metadata.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(src), Path(out)
    if target not in ("cpu", "tensorrt"):
        raise ValueError(f"unknown quantization target {target!r}")
    fp32 = OnnxRuntimeBackend(src)
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

def trtexec_command(onnx_path: str | Path, engine: str | Path, meta: dict, int8: bool = False,
                    workspace_mib: int = 1024, batch=TRT_EP_BATCH) -> str:
    """The trtexec command line that builds the same engine."""
    shape = f"{meta['in_channels']}x{meta['input_size']}x{meta['input_size']}"
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", "--fp16", *(["--int8"] if int8 else []),
             *(f"--{k}Shapes=input:{b}x{shape}" for k, b in zip(("min", "opt", "max"), batch, strict=True)),
             f"--memPoolSize=workspace:{workspace_mib}"]
    return " ".join(parts)


def _tensorrt(engine: str | Path = "ENGINE"):
    try:
        import tensorrt as trt
    except ImportError:
        raise FerRosError("TensorRT's Python module is not installed: build the engine with the trtexec command "
                          f"above, then run this command again with --from-engine {engine} to write its sidecar"
                          ) from None
    return trt


def build_engine(onnx_path: str | Path, out: str | Path, int8: bool = False, workspace_mib: int = 1024,
                 batch=TRT_EP_BATCH) -> dict:
    """ONNX -> serialized TensorRT engine (FP16, plus INT8 for a QDQ model) with its sidecar, verified."""
    trt = _tensorrt(out)
    onnx_path, out = Path(onnx_path), Path(out)
    reference = OnnxRuntimeBackend(onnx_path)
    meta = reference.metadata
    quantized = meta.get("quantization", {}).get("target")
    if quantized not in (None, "tensorrt"):
        raise FerRosError(f"{onnx_path} was quantized for the {quantized} (asymmetric int8); for TensorRT pass "
                          "the float ONNX with --int8")
    int8 = int8 or quantized == "tensorrt"
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; 8.x must ask for it
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(modelfile.read_bytes(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FerRosError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    c, s = meta["in_channels"], meta["input_size"]
    profile.set_shape("input", *[(b, c, s, s) for b in batch])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise FerRosError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    engine = bytes(plan)
    precision = "int8" if int8 else "fp16"
    sidecar = {"metadata": {**meta, "source": onnx_path.name}, "tensorrt": trt.__version__, "precision": precision,
               "batch": list(batch)}
    diff = _write_verified(out, engine, TensorRTBackend, reference.predict,
                           sample_inputs(meta, batch), None if int8 else FP16_TOLERANCE, "TensorRT vs onnxruntime",
                           sidecar)
    return {"path": str(out), "bytes": len(engine), "tensorrt": trt.__version__, "precision": precision,
            "max_abs_diff": diff}


def write_engine_sidecar(onnx_path: str | Path, engine: str | Path) -> Path:
    """Write the sidecar of an engine built elsewhere (e.g. by trtexec) from the ONNX it was built from."""
    meta = modelfile.read_metadata(onnx_path)
    try:
        import tensorrt as trt
        version = trt.__version__
    except ImportError:
        version = "unknown (built outside fer-ros)"
    precision = "int8" if "quantization" in meta else "fp16"
    return modelfile.write_sidecar(engine, modelfile.read_bytes(engine), {**meta, "source": Path(onnx_path).name},
                                   tensorrt=version, precision=precision)


# ---- command line -------------------------------------------------------------------------------

EXAMPLES = """examples:
  fer-ros export runs/arch1/best.pt                      # -> runs/arch1/best.onnx
  fer-ros export best.onnx --format onnx-int8 --calib-data fer2013.csv.gz
  fer-ros export best.onnx --format tensorrt             # on the Jetson / GPU machine itself
  fer-ros export best.onnx --format tensorrt --int8 --calib-data fer2013.csv.gz
  fer-ros export best.onnx --format tensorrt --from-engine best.engine   # after trtexec"""


def add_arguments(p):
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model", help="a .pt checkpoint; for onnx-int8 and tensorrt also an .onnx made by fer-ros export")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file (default: MODEL with .onnx, .int8.onnx or .engine)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="what to make (default: %(default)s)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help="ONNX opset: 17 also loads in TensorRT 8.5/8.6; 18+ uses torch's new exporter "
                        "(default: %(default)s)")
    c = p.add_argument_group("int8 calibration (onnx-int8, tensorrt --int8)")
    c.add_argument("--calib-data", metavar="PATH", help="FER2013 CSV(.gz) or image folder of real face crops")
    c.add_argument("--calib-split", metavar="SPLIT", default="PublicTest",
                   help="FER2013 split to draw crops from (default: %(default)s)")
    c.add_argument("--calib-size", type=int, default=1000, metavar="N",
                   help="crops to calibrate on (default: %(default)s)")
    c.add_argument("--eval-size", type=int, default=2000, metavar="N",
                   help="other crops of the split to measure the accuracy change on (default: %(default)s)")
    t = p.add_argument_group("TensorRT")
    t.add_argument("--int8", action="store_true", help="INT8 engine via a symmetric QDQ ONNX (needs --calib-data)")
    t.add_argument("--workspace", type=int, default=1024, metavar="MIB",
                   help="builder workspace in MiB (default: %(default)s)")
    t.add_argument("--batch", type=int, nargs=3, default=list(TRT_EP_BATCH), metavar=("MIN", "OPT", "MAX"),
                   help="batch sizes of the optimization profile (default: 1 8 32)")
    t.add_argument("--from-engine", metavar="ENGINE",
                   help="do not build: write the sidecar of ENGINE, built from MODEL (an .onnx) by trtexec")


def _default_output(model: Path, fmt: str, int8: bool) -> Path:
    stem = model.name[: -len(model.suffix)] if model.suffix else model.name
    suffix = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "tensorrt": ".int8.engine" if int8 else ".engine"}[fmt]
    return model.with_name(stem + suffix)


def _calibration(args, classes):
    if not args.calib_data:
        raise FerRosError("int8 needs real face crops to calibrate on: pass --calib-data fer2013.csv.gz "
                          "[--calib-split PublicTest]")
    return calibration_data(args.calib_data, args.calib_split, args.calib_size, args.eval_size, classes)


def _print_comparison(r: dict) -> None:
    line = f"  on {r['n']} held-out crops: top-1 agreement {r['agreement']:.2%}, max |diff| {r['max_abs_diff']:.3g}"
    if "accuracy_before" in r:
        line += (f", accuracy {r['accuracy_before']:.2%} -> {r['accuracy_after']:.2%} "
                 f"({r['accuracy_after'] - r['accuracy_before']:+.2%})")
    print(line)


def run(args) -> int:
    model = Path(args.model)
    source = modelfile.kind(model)
    if source == "engine" or (args.format == "onnx" and source != "pt"):
        raise FerRosError(f"{model}: --format {args.format} starts from a .pt checkpoint"
                          + ("" if args.format == "onnx" else " or an .onnx file"))
    out = Path(args.output) if args.output else _default_output(model, args.format, args.int8)
    if args.format == "tensorrt" and modelfile.kind(out) != "engine":
        raise FerRosError(f"{out}: a TensorRT engine needs an .engine or .plan name")
    if args.format != "tensorrt" and modelfile.kind(out) != "onnx":
        raise FerRosError(f"{out}: the output of --format {args.format} needs an .onnx name")
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
        int8 = args.format == "onnx-int8" or args.int8
        if int8:
            calib, evaluation = _calibration(args, modelfile.read_metadata(onnx_path)["classes"])
            target = "tensorrt" if args.format == "tensorrt" else "cpu"
            q_out = out if args.format == "onnx-int8" else out.with_name(out.stem + ".qdq.onnx")
            r = quantize_onnx(onnx_path, q_out, calib, target, evaluation,
                              f"{Path(args.calib_data).name}:{args.calib_split}")
            print(f"wrote {q_out} (int8 QDQ for {target}, {r['bytes'] / 1e6:.2f} MB, calibrated on {len(calib)} crops)")
            _print_comparison(r)
            onnx_path = q_out
        if args.format == "onnx-int8":
            return 0
        meta = modelfile.read_metadata(onnx_path)
        int8 = int8 or "quantization" in meta
        print("trtexec equivalent:\n  " + trtexec_command(onnx_path, out, meta, int8, args.workspace, args.batch))
        if args.from_engine:
            side = write_engine_sidecar(onnx_path, args.from_engine)
            print(f"wrote {side}")
            return 0
        _tensorrt(out)
        print("building the TensorRT engine (a minute or more)...")
        r = build_engine(onnx_path, out, int8, args.workspace, tuple(args.batch))
        print(f"wrote {out} and {modelfile.sidecar_path(out).name} (TensorRT {r['tensorrt']}, {r['precision']}, "
              f"{r['bytes'] / 1e6:.2f} MB): max |TensorRT - onnxruntime| = {r['max_abs_diff']:.2g}")
    return 0
