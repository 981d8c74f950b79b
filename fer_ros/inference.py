"""Classifier backends behind one interface: all faces of a frame in one batched call.

- ``onnxruntime`` (default): ``.onnx`` on the CPU, or on CUDA / TensorRT execution providers
  (device ``cuda[:N]`` / ``tensorrt[:N]``) when onnxruntime-gpu is installed.
- ``torch``: ``.pt`` checkpoints on CPU or CUDA, for development (needs torch).
- ``tensorrt``: a serialized ``.engine`` / ``.plan`` with its JSON sidecar (needs TensorRT >= 8.6
  and cuda-python 12.9.1+ for device memory).

Every backend takes float32 (N, C, H, W) from `fer_ros.preprocess.to_input` and returns
float32 (N, n_classes) probabilities; model files are verified when loaded (`fer_ros.modelfile`).
"""

import functools
from pathlib import Path

import numpy as np

from . import modelfile
from .errors import FerRosError, ModelFileError
from .preprocess import magnify, to_input

BACKENDS = ("onnxruntime", "torch", "tensorrt")
WEIGHTS = Path(__file__).resolve().parent / "weights"
#: the shipped models, by the name a user may give instead of a path (see MODEL_CARD.md)
SHIPPED = {"mix": WEIGHTS / "mix_arch1.onnx", "fer2013": WEIGHTS / "fer2013_arch1.onnx",
           "ferplus": WEIGHTS / "ferplus_arch1.onnx"}
DEFAULT_NAME = "mix"
DEFAULT_MODEL = SHIPPED[DEFAULT_NAME]
#: batch sizes a TensorRT engine is built for (min, opt, max): `fer-ros export` and the TensorRT provider
TRT_EP_BATCH = (1, 8, 32)


class Backend:
    """A loaded model: `predict` maps (N, C, H, W) float32 input to (N, n_classes) probabilities."""

    name = ""

    def __init__(self, path: Path, metadata: dict):
        self.path = Path(path)
        self.metadata = metadata
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.input_size: int = metadata["input_size"]
        self.in_channels: int = metadata["in_channels"]
        self.normalization: dict = dict(metadata["normalization"])
        self.max_batch: int | None = None  # larger batches are split

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = (self.in_channels, self.input_size, self.input_size)
        if batch.ndim != 4 or batch.shape[1:] != want:
            raise ValueError(f"{self.name} backend: input of shape {batch.shape}, expected (N, {want[0]}, {want[1]}, "
                             f"{want[2]})")
        if not len(batch):
            return np.zeros((0, len(self.classes)), np.float32)
        step = self.max_batch or len(batch)
        parts = [self._run(batch[i:i + step]) for i in range(0, len(batch), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def classify(self, crops, flip: bool = False, zoom: float = 1.0) -> np.ndarray:
        """Grey uint8 face crops (N, H, W) -> (N, n_classes) probabilities, in one batch.

        Test-time views, averaged: flip=True adds each face's mirror image (+1.5 points of FER2013
        accuracy for the shipped model), zoom > 1 adds its centre magnified `zoom` times (and that
        view's mirror); each doubles the classifier time. See MODEL_CARD.md.
        """
        x = to_input(crops, self.input_size, self.normalization["mean"], self.normalization["std"])
        if not len(x):
            return np.zeros((0, len(self.classes)), np.float32)
        views = [x] if zoom == 1.0 else [x, magnify(x, zoom)]
        if flip:
            views += [v[..., ::-1] for v in views]
        if len(views) == 1:
            return self.predict(x)
        return self.predict(np.concatenate(views)).reshape(len(views), len(x), -1).mean(0)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} classes={len(self.classes)} input={self.input_size}>"


def parse_device(device: str, kinds: tuple[str, ...]) -> tuple[str, int]:
    """'cpu', 'cuda', 'cuda:1', 'tensorrt:0' -> (kind, index), kind limited to `kinds`."""
    kind_, _, index = device.strip().lower().partition(":")
    if kind_ not in kinds or (index and not index.isdigit()) or (kind_ == "cpu" and index):
        choices = ", ".join(k if k == "cpu" else k + "[:N]" for k in kinds)
        raise FerRosError(f"device {device!r} is not one of: {choices}")
    return kind_, int(index or 0)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, tuned for small batches on few cores (sequential, `threads` intra-op threads)."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: str = "cpu", threads: int = 1):
        import onnxruntime as ort

        kind_, index = parse_device(device, ("cpu", "cuda", "tensorrt"))
        providers = self._providers(ort, kind_, index, path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle worker threads must not spin: they would steal the cores the face detector needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.session, meta = modelfile.open_onnx(path, options, providers)
        if self.session.get_providers()[0] != providers[0][0]:
            raise FerRosError(f"onnxruntime could not start {providers[0][0]} for device {device!r} "
                              f"(it fell back to {self.session.get_providers()[0]}); check the CUDA/TensorRT install")
        super().__init__(path, meta)
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def _providers(ort, kind_: str, index: int, path: Path) -> list[tuple[str, dict]]:
        cpu = ("CPUExecutionProvider", {})
        if kind_ == "cpu":
            return [cpu]
        cuda = ("CUDAExecutionProvider", {"device_id": index})
        wanted = [cuda, cpu]
        if kind_ == "tensorrt":
            wanted.insert(0, ("TensorrtExecutionProvider", tensorrt_provider_options(path, index)))
        available = ort.get_available_providers()
        if wanted[0][0] not in available:
            raise FerRosError(f"device {kind_} needs {wanted[0][0]}, which this onnxruntime lacks (it has "
                              f"{', '.join(available)}); install onnxruntime-gpu or use device cpu")
        return wanted

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def tensorrt_provider_options(path: Path, index: int = 0) -> dict:
    """onnxruntime's TensorRT provider options for a fer_ros ONNX on GPU `index`.

    Its engine cache is keyed on the model's file name and tensor names, not its weights, so each
    model gets its own cache folder, named by the checksum sealed in the file: a retrained model
    never reuses the engine of an old one. A TensorRT-target int8 (Q/DQ) model turns on int8; a
    CPU-target one is refused, as TensorRT cannot build its asymmetric uint8 graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session, meta = modelfile.open_onnx(path, options)
    target = meta.get("quantization", {}).get("target")
    if target not in (None, "tensorrt"):
        raise FerRosError(f"{path}: this int8 ONNX was quantized for the {target} (asymmetric uint8), which TensorRT "
                          "cannot build; use device cpu, or quantize the float ONNX for TensorRT with `fer-ros export "
                          "FLOAT.onnx --format tensorrt --int8 --calib-data DATA`")
    digest = session.get_modelmeta().custom_metadata_map[modelfile.SHA_KEY]
    cache = Path.home() / ".cache" / "fer_ros" / "ort_tensorrt" / digest
    cache.mkdir(parents=True, exist_ok=True)
    size = f"{meta['in_channels']}x{meta['input_size']}x{meta['input_size']}"
    shapes = [f"input:{b}x{size}" for b in TRT_EP_BATCH]
    return {"device_id": index, "trt_fp16_enable": True, "trt_int8_enable": target == "tensorrt",
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache), "trt_profile_min_shapes": shapes[0],
            "trt_profile_opt_shapes": shapes[1], "trt_profile_max_shapes": shapes[2]}


class TorchBackend(Backend):
    """PyTorch on CPU or CUDA: the checkpoint's model followed by softmax (`fer_ros.learning.models.Classifier`)."""

    name = "torch"

    def __init__(self, path: Path, device: str = "cpu"):
        import torch

        from .learning.checkpoint import load_model
        from .learning.models import Classifier

        kind_, index = parse_device(device, ("cpu", "cuda"))
        if kind_ == "cuda" and not torch.cuda.is_available():
            raise FerRosError(f"device {device!r}: this torch has no CUDA device; use device cpu")
        self.device = torch.device(kind_, index) if kind_ == "cuda" else torch.device("cpu")
        model, meta = load_model(path, map_location=str(self.device))
        super().__init__(path, modelfile.check_metadata(meta, path))
        self.model = Classifier(model).eval().to(self.device)
        self._torch = torch

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(batch).to(self.device)).cpu().numpy()


def _cuda():
    """cuda-python's runtime module and its documented native-handle getter (cuda-python 12.9.1+)."""
    try:
        from cuda.bindings import runtime
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        raise FerRosError("the tensorrt backend needs cuda-python 12.9.1+ of your CUDA major version: "
                          "pip install 'cuda-python>=12.9.1,<13' (CUDA 12, JetPack 6) or 'cuda-python>=13,<14' "
                          "(CUDA 13)") from None
    return runtime, get_cuda_native_handle


def _check(result):
    """Unpack a cuda-python call's (error, value...) tuple, raising on error."""
    err, *values = result
    if getattr(err, "value", err) != 0:  # cudaError_t.cudaSuccess
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values or None


@functools.cache
def trt_logger():
    """The one TensorRT logger of this process, shared by every builder and runtime."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


class TensorRTBackend(Backend):
    """A serialized TensorRT engine (named-tensor API of TensorRT >= 8.6) on one GPU.

    The GPU is made current on the thread that runs each batch (the node infers on a worker thread,
    and the current CUDA device is per thread). `close` frees the device memory; so does the
    garbage collector.
    """

    name = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda"):
        try:
            import tensorrt as trt
        except ImportError:
            raise FerRosError("the tensorrt backend needs TensorRT's Python module (JetPack's python3-libnvinfer "
                              "or pip install tensorrt); or use backend onnxruntime") from None
        _, self._device = parse_device(device, ("cuda",))
        self._d_in = self._d_out = self._stream = None
        self._cudart, self._native = _cuda()
        data, meta, side = modelfile.read_engine(path)
        super().__init__(path, meta)
        try:
            self._load(trt, data, side)
        except BaseException:
            self.close()
            raise

    def _load(self, trt, data: bytes, side: dict) -> None:
        cudart, path = self._cudart, self.path
        _check(cudart.cudaSetDevice(self._device))
        self._runtime = trt.Runtime(trt_logger())
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ModelFileError(f"{path}: TensorRT {trt.__version__} cannot load this engine (built with TensorRT "
                                 f"{side.get('tensorrt')}); engines are specific to a GPU and TensorRT version: "
                                 "rebuild it here with `fer-ros export MODEL.onnx --format tensorrt`")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{path}: expected one input and one output tensor, found {names}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        for name in names:
            if self._engine.get_tensor_dtype(name) != trt.float32:
                raise ModelFileError(f"{path}: tensor {name} is {self._engine.get_tensor_dtype(name)}, not float32")
        meta = self.metadata
        modelfile.check_io(meta, tuple(self._engine.get_tensor_shape(self.input_name)),
                           tuple(self._engine.get_tensor_shape(self.output_name)), path)
        low, _, high = self._engine.get_tensor_profile_shape(self.input_name, 0)
        if low[0] != 1:
            raise ModelFileError(f"{path}: the engine's smallest batch is {low[0]}, so a frame with one face cannot "
                                 f"run; rebuild it with a minimum batch of 1 (trtexec --minShapes=input:1x"
                                 f"{meta['in_channels']}x{meta['input_size']}x{meta['input_size']})")
        self.max_batch = int(high[0])
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise FerRosError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
        per_face = self.in_channels * self.input_size ** 2
        self._d_in = _check(cudart.cudaMalloc(self.max_batch * per_face * 4))
        self._d_out = _check(cudart.cudaMalloc(self.max_batch * len(self.classes) * 4))
        self._stream = _check(cudart.cudaStreamCreate())
        for name, address in ((self.input_name, self._d_in), (self.output_name, self._d_out)):
            if not self._context.set_tensor_address(name, int(address)):
                raise FerRosError(f"{path}: TensorRT rejected the device address of tensor {name}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        _check(cudart.cudaSetDevice(self._device))
        out = np.empty((len(batch), len(self.classes)), np.float32)
        if not self._context.set_input_shape(self.input_name, batch.shape):
            raise RuntimeError(f"TensorRT rejected input shape {batch.shape}")
        _check(cudart.cudaMemcpyAsync(self._d_in, batch, batch.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
        if not self._context.execute_async_v3(self._native(self._stream)):
            raise RuntimeError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(out, self._d_out, out.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return out

    def close(self) -> None:
        """Free whatever device buffers and stream were allocated (also after a failed load)."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        cudart.cudaSetDevice(self._device)
        for address in (self._d_in, self._d_out):
            if address is not None:
                cudart.cudaFree(address)
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._d_in = self._d_out = self._stream = None

    __del__ = close


def load_backend(model: str | Path | None = None, backend: str = "onnxruntime", device: str = "cpu",
                 threads: int = 1) -> Backend:
    """Load and verify a model file for `backend`.

    `model` is a path, the name of a shipped model ("mix", "fer2013", "ferplus") or None for "mix".
    backend "auto" picks the one for the file type: .onnx onnxruntime, .pt torch, .engine/.plan tensorrt.
    `threads` sets onnxruntime's intra-op threads on the CPU. Raises ModelFileError for a
    missing, corrupt or mismatched file and FerRosError for an unusable backend or device.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise FerRosError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    path = SHIPPED.get(str(model or DEFAULT_NAME), Path(str(model)))
    kind_ = modelfile.kind(path)
    backend = _backend_for(kind_) if backend == "auto" else backend
    wanted = {"onnxruntime": "onnx", "torch": "pt", "tensorrt": "engine"}[backend]
    if kind_ != wanted:
        hint = {("onnxruntime", "pt"): f"convert it with `fer-ros export {path}` first",
                ("tensorrt", "pt"): f"build an engine with `fer-ros export {path} --format tensorrt`",
                ("tensorrt", "onnx"): f"build an engine with `fer-ros export {path} --format tensorrt`"}
        raise ModelFileError(f"{path}: the {backend} backend loads .{'engine/.plan' if wanted == 'engine' else wanted} "
                             f"files; {hint.get((backend, kind_), f'use backend {_backend_for(kind_)} for it')}")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, device, threads)
    if backend == "torch":
        return TorchBackend(path, device)
    return TensorRTBackend(path, "cuda" if device == "cpu" else device)


def _backend_for(kind_: str) -> str:
    return {"onnx": "onnxruntime", "pt": "torch", "engine": "tensorrt"}[kind_]
