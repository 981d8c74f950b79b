"""`fer-ros train`: train ARCH-1..4 on FER2013 / FER+ / image folders from a YAML config.

One short loop in the manner of nanoGPT's train.py: load crops, `to_input` them once (the
inference preprocessing), augment batches on the fly with random affine warps, and log,
plot and checkpoint every epoch. Runs under `torchrun --nproc_per_node N` (DDP: gloo on CPU,
nccl on CUDA): each process takes a shard of every batch, and metrics are all-reduced.
"""

import json
import math
import os
import subprocess
import time
import typing
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from ..classes import FER7
from ..errors import DataError
from ..metrics import format_report, report_from_confusion
from ..plots import plot_confusion, plot_curves
from ..preprocess import INPUT_SIZE, NORMALIZATION, to_input
from . import checkpoint
from .data import Dataset
from .models import ARCHS, build_model, count_params
from .sources import epoch_index


@dataclass
class TrainConfig:
    """Every knob of a training run; `training/configs/*.yaml` set a subset."""

    arch: str = "arch1"
    data: str = "../shared/data/fer2013/fer2013.csv.gz"
    pixels: str | None = None  # FER2013 CSV with the pixels, when `data` is FER+ votes
    train_split: str | None = "Training"
    val_data: str | None = None  # default: `data`
    val_split: str | None = "PublicTest"
    soft_labels: bool = False  # FER+: train on the vote distribution
    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9) | adam (coupled L2, as Keras) | adamw
    lr: float = 0.05
    weight_decay: float = 5e-4  # on conv and dense weights only
    schedule: str = "cosine"  # cosine (with warmup) | plateau (x factor on val-loss plateau) | constant
    warmup_epochs: int = 2
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    early_stop_patience: int = 0  # epochs without a better val accuracy before stopping; 0 = off
    dropout: float = 0.5
    label_smoothing: float = 0.0
    rotation: float = 20.0  # degrees, +-
    shift: float = 0.1  # fraction of the image, +-
    zoom: float = 0.1  # +-
    hflip: bool = True
    erase: float = 0.0  # probability of blanking a random rectangle (2-33% of the crop) to its mean grey
    photometric: float = 0.0  # probability of a random gamma (0.6-1.6), contrast (0.6-1.4) and brightness (+-0.15)
    blur: float = 0.0  # probability of a Gaussian blur, sigma 0.3-1.5 px
    noise: float = 0.0  # probability of Gaussian noise, sigma 0-0.05 (of the 0..1 grey range)
    lowres: float = 0.0  # probability of shrinking the crop to 16-40 px and back (a small, upsampled face)
    logit_adjust: float = 0.0  # tau of the logit-adjusted loss (Menon et al. 2021): logits + tau * log(prior)
    tta_flip: bool = False  # validate on the mean of the image and its mirror
    seed: int = 0
    num_threads: int = 0  # torch threads per process; 0 = cores / processes
    bf16: str = "auto"  # auto | on | off: bf16 autocast on CPUs with AVX-512 BF16 / AMX, and on CUDA
    max_rows: int = 0  # use only the first N training rows (quick runs and tests); 0 = all
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning, warm restarts)
    teacher: str | list | None = None  # distil from this checkpoint (a list: their mean), see distill_targets
    distill_weight: float = 0.5  # share of the teacher's probabilities in each target (the rest: the label)
    distill_temperature: float = 2.0  # the teacher's logits are divided by this before the softmax
    distill_mirror: bool = True  # the teacher's probabilities averaged with its mirror image's (else the image's own)
    #: several training sources, each a mapping of fer_ros.learning.sources.Source's fields (default: `data` alone)
    sources: list = field(default_factory=list)
    #: validation sources likewise (default: `val_data` or `data`, `val_split`); the first is `val_accuracy`
    val_sources: list = field(default_factory=list)
    select: str = "first"  # which epoch is best.pt: first (the first validation set's accuracy) | mean (of all)
    framing: dict = field(default_factory=dict)  # face parameters (PipelineConfig) that frame photo folders
    crop_cache: str | None = "runs/crops"  # where framed crops of photo folders are cached (null: not cached)
    extra: dict = field(default_factory=dict)  # free-form notes stored in the checkpoint

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a config, then `overrides` (None: keep the file's value). Every key and value, from the file or
        an override (`fer-ros train --set`, --epochs, ...), goes through the same checks before any work
        starts; a DataError names where it came from and the key (an unknown one with the nearest name).

        A field's range or choices come from its metadata, ``field(default=0.0, metadata={"range": (0.0, 1.0)})``
        (or {"choices": (...)}), else from the table below; a field with neither is only type-checked.
        """
        import difflib

        from ..errors import read_yaml

        limits = {  # (lo, hi) closed ranges and tuples of choices, for fields whose metadata has none
            "arch": tuple(ARCHS), "optimizer": ("sgd", "adam", "adamw"), "schedule": ("cosine", "plateau", "constant"),
            "bf16": ("auto", "on", "off"), "select": ("first", "mean"),
            "epochs": (1, 100_000), "batch_size": (1, 65_536), "lr": (1e-8, 10.0), "weight_decay": (0.0, 1.0),
            "warmup_epochs": (0, 100_000), "plateau_factor": (1e-4, 1.0), "plateau_patience": (0, 100_000),
            "early_stop_patience": (0, 100_000), "dropout": (0.0, 0.95), "label_smoothing": (0.0, 0.99),
            "rotation": (0.0, 180.0), "shift": (0.0, 0.5), "zoom": (0.0, 0.9), "erase": (0.0, 1.0),
            "photometric": (0.0, 1.0), "blur": (0.0, 1.0), "noise": (0.0, 1.0), "lowres": (0.0, 1.0),
            "logit_adjust": (0.0, 1.0), "seed": (0, 2 ** 32 - 1), "num_threads": (0, 4096), "max_rows": (0, 10 ** 9),
            "distill_weight": (0.0, 1.0), "distill_temperature": (0.05, 100.0),
        }
        raw = read_yaml(path, "training config", DataError)
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise DataError(f"{path}: a training config is a mapping of keys to values, not a "
                            f"{type(raw).__name__}; see training/configs/paper.yaml")
        known = {f.name: f for f in fields(cls)}
        given = {k: v for k, v in overrides.items() if v is not None}

        def where(key) -> str:
            return f"override {key}={given[key]!r}: " if key in given else f"{path}: "

        for values in (raw, given):
            unknown = [str(k) for k in values if k not in known]
            if unknown:
                near = difflib.get_close_matches(unknown[0], list(known), n=1, cutoff=0.6)
                raise DataError(f"{where(unknown[0])}unknown config keys {unknown}"
                                f"{f' (did you mean {near[0]!r}?)' if near else ''}; "
                                "the keys are TrainConfig's fields, as in training/configs/paper.yaml")
        raw.update(given)
        if isinstance(raw.get("bf16"), bool):  # YAML reads a bare on/off as a boolean
            raw["bf16"] = "on" if raw["bf16"] else "off"
        for key, value in raw.items():
            f = known[key]
            args = typing.get_args(f.type)
            kinds = [a for a in args if a is not type(None)] or [f.type]
            names = " or ".join(k.__name__ for k in kinds)
            if value is None:
                if type(None) not in args:
                    raise DataError(f"{where(key)}{key} must be {names}, not empty")
                continue
            accepted = tuple(kinds) + ((int,) if float in kinds else ())
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in kinds):
                raise DataError(f"{where(key)}{key} must be {names}, not {value!r}")
            bound = f.metadata.get("range") or f.metadata.get("choices") or limits.get(key)
            if key == "arch" and value not in bound:
                raise DataError(f"{where(key)}unknown arch {value!r}: choose one of {', '.join(bound)}")
            if isinstance(bound, tuple) and bound and isinstance(bound[0], str) and value not in bound:
                raise DataError(f"{where(key)}{key} must be one of {', '.join(bound)}, not {value!r}")
            if (isinstance(bound, tuple) and len(bound) == 2 and not isinstance(bound[0], str)
                    and not bound[0] <= value <= bound[1]):  # NaN fails too
                raise DataError(f"{where(key)}{key} must be within {bound[0]}..{bound[1]}, not {value!r}")
            if key == "teacher" and isinstance(value, list) and not (value and all(isinstance(v, str) and v
                                                                                     for v in value)):
                raise DataError(f"{where(key)}teacher must be a checkpoint path or a list of them, not {value!r}")
        return cls(**raw)

    def source_list(self, key: str) -> list:
        """`sources` or `val_sources` as fer_ros.learning.sources.Source objects (checked), with the single-data keys as
        the default."""
        from .sources import Source

        given = getattr(self, key)
        if not isinstance(given, list):
            raise DataError(f"{key} must be a list of sources, not {given!r}")
        if not given:
            given = [{"path": self.data, "split": self.train_split, "pixels": self.pixels, "soft": self.soft_labels}
                     if key == "sources" else {"path": self.val_data or self.data, "split": self.val_split,
                                               "pixels": self.pixels}]
        return [Source.parse(spec, f"{key}[{i}]") for i, spec in enumerate(given)]


#: the config `fer-ros train` runs without --config, in a clone of the repository (an installed package has none)
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "fer2013.yaml"


def default_config() -> Path:
    """DEFAULT_CONFIG, found from the package's own location, so any working directory works; DataError where the
    package was installed without the repository's training/ folder."""
    if not DEFAULT_CONFIG.is_file():
        raise DataError(f"no --config given, and the default {DEFAULT_CONFIG} is not there (an installed package "
                        "has no training/ folder); pass --config FILE, e.g. one of the repository's "
                        "training/configs/*.yaml")
    return DEFAULT_CONFIG


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config (see training/configs; default: training/configs/fer2013.yaml "
                                     "of the fer_ros repository, wherever you run it from)")
    p.add_argument("--out", default="runs/train", help="output folder for checkpoints, metrics and plots")
    p.add_argument("--arch", help="override the config's architecture (arch1..arch4)")
    p.add_argument("--data", help="override the training data (FER2013/FER+ CSV or image folder)")
    p.add_argument("--pixels", help="FER2013 CSV with the pixels, when --data is the FER+ votes CSV")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="override the batch size")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--max-rows", type=int, dest="max_rows", help="train on the first N rows only (quick runs)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), help="bf16 autocast (default from config: auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override any config key, VALUE read as YAML (repeatable), e.g. --set distill_weight=0.8")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def run(args) -> int:
    """Check the config, every override and the paths it names, and the output folder, then train."""
    from ..cli import check_output
    from ..errors import yaml_problem

    overrides = {k: getattr(args, k) for k in ("arch", "data", "pixels", "epochs", "batch_size", "lr",
                                               "max_rows", "bf16")}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DataError(f"--set {setting}: write KEY=VALUE, e.g. --set lr=0.01")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise DataError(f"--set {setting}: the value is not YAML ({yaml_problem(e)})") from None
        if overrides[key] is None:
            raise DataError(f"--set {setting}: no value; write KEY=VALUE, e.g. --set lr=0.01")
    if args.config is None:
        args.config = default_config()
    cfg = TrainConfig.from_yaml(args.config, **overrides)
    teachers = [cfg.teacher] if isinstance(cfg.teacher, str) else cfg.teacher or []
    sources = cfg.source_list("sources") + cfg.source_list("val_sources")
    for key, value in [("init_from", cfg.init_from), *(("teacher", t) for t in teachers)]:
        if value is not None and not Path(value).exists():
            raise DataError(f"{args.config}: {key} {value}: no such file or folder; fix the path (or override it: "
                            f"--set {key}=PATH)")
    out = check_output(args.out, "--out", "folder", inputs=[args.config, *(s.path for s in sources)])
    if args.resume and not (out / "last.pt").is_file():
        raise DataError(f"--resume: {out / 'last.pt'} does not exist; start without --resume")
    train(cfg, out, resume=args.resume)
    return 0


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, shift, zoom, horizontal flip (edges replicated) and erasing of a batch (N,1,H,W)."""
    n = x.shape[0]

    def u(scale):
        return (torch.rand(n, generator=gen) * 2 - 1) * scale

    angle = u(math.radians(cfg.rotation))
    scale = 1 + u(cfg.zoom)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(2 * cfg.shift)], 1),
                         torch.stack([sin * flip, cos, u(2 * cfg.shift)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = capture_shift(x, cfg, gen)
    return erase(x, cfg.erase, gen) if cfg.erase > 0 else x


def capture_shift(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Cameras that are not FER2013's: each of lowres, blur, photometric and noise hits an image
    (N,1,H,W, grey 0..1) with its probability in cfg; images it does not hit are left as they are."""
    n, _, h, w = x.shape

    def hit(p):
        return (torch.rand(n, generator=gen) < p).view(n, 1, 1, 1)

    def u(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, generator=gen)).view(n, 1, 1, 1)

    if cfg.lowres > 0:
        side = int(torch.randint(16, 41, (1,), generator=gen))  # one size a batch: one resize call
        small = F.interpolate(x, size=(side, side), mode="area")
        x = torch.where(hit(cfg.lowres), F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False), x)
    if cfg.blur > 0:
        sigma = u(0.3, 1.5).view(n, 1)
        taps = torch.arange(-3, 4, dtype=x.dtype).view(1, 7)
        k = torch.exp(-taps ** 2 / (2 * sigma ** 2))
        k = (k / k.sum(1, keepdim=True)).to(x.device, x.dtype)
        planes = F.pad(x.view(1, n, h, w), (3, 3, 3, 3), mode="replicate")
        planes = F.conv2d(planes, k.view(n, 1, 1, 7), groups=n)
        planes = F.conv2d(planes, k.view(n, 1, 7, 1), groups=n)
        x = torch.where(hit(cfg.blur), planes.view(n, 1, h, w), x)
    if cfg.photometric > 0:
        gamma = torch.exp(u(math.log(0.6), math.log(1.6)))
        mean = x.mean((2, 3), keepdim=True)
        shifted = (x.clamp(0, 1) ** gamma - mean) * u(0.6, 1.4) + mean + u(-0.15, 0.15)
        x = torch.where(hit(cfg.photometric), shifted.clamp(0, 1), x)
    if cfg.noise > 0:
        noisy = x + torch.randn(x.shape, generator=gen) * u(0.0, 0.05)
        x = torch.where(hit(cfg.noise), noisy.clamp(0, 1), x)
    return x


def erase(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): with probability p per image, a rectangle of 2-33% of
    its area and aspect 0.3-3.3 is set to the image's mean."""
    n, _, h, w = x.shape
    area = (0.02 + 0.31 * torch.rand(n, generator=gen)) * h * w
    aspect = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log(3.3))
    eh, ew = (area * aspect).sqrt().clamp(max=h), (area / aspect).sqrt().clamp(max=w)
    top, left = torch.rand(n, generator=gen) * (h - eh), torch.rand(n, generator=gen) * (w - ew)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1)) &
           (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
    box &= (torch.rand(n, generator=gen) < p).view(n, 1, 1)
    return torch.where(box.unsqueeze(1).to(x.device), x.mean((2, 3), keepdim=True), x)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise DataError(f"unknown optimizer {cfg.optimizer!r}: choose sgd, adam or adamw")


class Schedule:
    """Learning rate per step: linear warmup then cosine to zero, plateau decay, or constant."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
        self.opt, self.cfg, self.steps_per_epoch = opt, cfg, steps_per_epoch
        self.scale, self.best_loss, self.bad_epochs = 1.0, math.inf, 0

    def lr(self, epoch: int, step: int) -> float:
        cfg, t = self.cfg, epoch + step / self.steps_per_epoch
        if cfg.warmup_epochs and t < cfg.warmup_epochs:
            return cfg.lr * (t + 1 / self.steps_per_epoch) / cfg.warmup_epochs
        if cfg.schedule == "cosine":
            span = max(cfg.epochs - cfg.warmup_epochs, 1)
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * min((t - cfg.warmup_epochs) / span, 1.0)))
        return cfg.lr * self.scale

    def step(self, epoch: int, step: int) -> float:
        lr = self.lr(epoch, step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def end_epoch(self, val_loss: float) -> None:
        if self.cfg.schedule != "plateau":
            return
        if val_loss < self.best_loss - 1e-4:
            self.best_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.plateau_patience:
                self.scale *= self.cfg.plateau_factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, s: dict) -> None:
        self.scale, self.best_loss, self.bad_epochs = s["scale"], s["best_loss"], s["bad_epochs"]


def train_step(net, opt, x: torch.Tensor, y: torch.Tensor, label_smoothing: float, amp,
               logit_offset: torch.Tensor | None = None):
    """One optimisation step on a batch; returns (loss, logits). y: labels or soft targets;
    logit_offset (C,) is added to the logits in the loss only (logit adjustment)."""
    with amp():
        logits = net(x).float()
    adjusted = logits if logit_offset is None else logits + logit_offset
    loss = F.cross_entropy(adjusted, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, logits


def load_splits(cfg: TrainConfig) -> tuple[list[Dataset], list, list[Dataset]]:
    """(each training source's crops with their targets, the training Sources, each validation set)."""
    from ..config import load_config
    from ..framing import Framer
    from .sources import load_source

    train_sources, val_sources = cfg.source_list("sources"), cfg.source_list("val_sources")
    framer = None
    if any(Path(s.path).is_dir() for s in train_sources + val_sources):
        try:
            framer = Framer(load_config(**cfg.framing), INPUT_SIZE)
        except (TypeError, ValueError) as e:  # ConfigError is a ValueError
            raise DataError(f"framing: {e}; its keys are the face parameters of fer_ros/config/fer.yaml") from None
    cache = Path(cfg.crop_cache) if cfg.crop_cache else None
    train = []
    for src in train_sources:
        data = load_source(src, framer, cache, train[0].classes if train else FER7, cfg.max_rows)
        train.append(source_targets(cfg, src, data))
    val = [load_source(src, framer, cache, train[0].classes) for src in val_sources]
    return train, train_sources, val


def source_targets(cfg: TrainConfig, src, data: Dataset) -> Dataset:
    """A source's training targets: its labels, mixed with the teacher's probabilities by the source's `distill`
    share (default: the config's distill_weight when it has a teacher); an unlabelled source takes the
    teacher's probabilities, or with `pseudo` its top class where that is at least as probable."""
    from .sources import subset

    weight = src.distill if src.distill is not None else 1.0 if not src.labelled else \
        cfg.distill_weight if cfg.teacher else 0.0
    if not src.labelled:
        weight = 1.0
        if not cfg.teacher:
            raise DataError(f"source {src.name}: an unlabelled source needs a teacher (teacher: CHECKPOINT)")
    if weight == 0:
        return data
    if not cfg.teacher:
        raise DataError(f"source {src.name}: distill {weight} needs a teacher (teacher: CHECKPOINT)")
    probs = teacher_probs(cfg, data)
    if src.pseudo:
        keep = np.flatnonzero(probs.max(1) >= src.pseudo)
        below = Counter({"below the pseudo-label floor": len(data) - len(keep)})
        return replace(subset(data, keep), targets=probs[keep].argmax(1), skipped=data.skipped + below)
    labels = soft_targets(data) if src.labelled else 0.0
    return replace(data, targets=((1 - weight) * labels + weight * probs).astype(np.float32))


def soft_targets(data: Dataset) -> np.ndarray:
    """The targets as (N, C) float32 probabilities (labels one-hot)."""
    if data.targets.ndim == 2:
        return data.targets.astype(np.float32)
    return np.eye(len(data.classes), dtype=np.float32)[data.targets]


def distill_targets(cfg: TrainConfig, data: Dataset) -> np.ndarray:
    """Soft targets (N, C): (1 - w) * label + w * the teacher's probabilities (`teacher_probs`)."""
    return (1 - cfg.distill_weight) * soft_targets(data) + cfg.distill_weight * teacher_probs(cfg, data)


@torch.no_grad()
def teacher_probs(cfg: TrainConfig, data: Dataset) -> np.ndarray:
    """The teacher's probabilities (N, C) at temperature T, mirror-averaged unless not distill_mirror.

    The teacher sees each training crop once, unaugmented; its mirror average makes the targets
    fit a flipped crop as well as the original. A list of teachers is an ensemble: the mean of
    their probabilities. Each teacher gets its own input (size, channels, normalization from its
    metadata: `preprocess.model_input`), built 1024 crops at a time; a teacher with more classes than the
    data (FER+'s contempt) has its probabilities over the data's classes renormalised. A teacher's
    probabilities are kept beside it (`<teacher>.probs/<key>.npy`, keyed by its checksum, the crops and the
    temperature) and read back by later runs and `--resume`.
    """
    import hashlib

    from ..preprocess import model_input

    probs = 0
    teachers = [cfg.teacher] if isinstance(cfg.teacher, str) else cfg.teacher
    crops = hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()[:16]
    for path in teachers:
        blob = checkpoint.load(path)
        key = f"{blob['sha256'][:16]}-{crops}-T{cfg.distill_temperature:g}{'' if cfg.distill_mirror else '-own'}"
        cache = Path(str(path) + ".probs") / f"{key}.npy"
        if cache.is_file():
            probs = probs + np.load(cache) / len(teachers)
            continue
        teacher, meta = checkpoint.load_model(path)
        missing = [c for c in data.classes if c not in meta["classes"]]
        if missing:
            raise DataError(f"{path}: the teacher lacks the data's classes {missing} (it has {meta['classes']})")
        columns = [list(meta["classes"]).index(c) for c in data.classes]
        xs = (torch.from_numpy(model_input(data.images[i:i + 1024], meta)) for i in range(0, len(data), 1024))
        views = (lambda xb: (xb, xb.flip(3))) if cfg.distill_mirror else (lambda xb: (xb,))
        mine = torch.cat([sum(F.softmax(teacher(v) / cfg.distill_temperature, 1) for v in views(xb)) for xb in
                          tqdm(xs, desc=f"teacher {Path(path).name}", total=-(-len(data) // 1024), leave=False)])
        mine = mine[:, columns]
        mine = (mine / mine.sum(1, keepdim=True)).numpy()
        try:
            cache.parent.mkdir(exist_ok=True)
            np.save(cache, mine)
        except OSError:  # a read-only place: the run goes on without the cache
            pass
        probs = probs + mine / len(teachers)
    return np.asarray(probs, np.float32)


@torch.no_grad()
def evaluate_logits(model, x: torch.Tensor, y: torch.Tensor, n_classes: int, batch: int, tta_flip: bool,
                    amp) -> tuple[np.ndarray, float]:
    """(confusion matrix, summed cross-entropy) of model on (x, y)."""
    model.eval()
    cm = torch.zeros(n_classes * n_classes, dtype=torch.int64)
    loss = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with amp():
            logits = model(xb).float()
            if tta_flip:
                logits = torch.log_softmax(logits, 1).exp() + torch.log_softmax(model(xb.flip(3)).float(), 1).exp()
                logits = (logits / 2).log()
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        cm += torch.bincount(yb * n_classes + logits.argmax(1), minlength=n_classes * n_classes)
    return cm.view(n_classes, n_classes).numpy(), loss


def train(cfg: TrainConfig, out: Path, resume: bool = False) -> dict:
    """Train and return the best epoch's metrics; writes checkpoints, metrics.jsonl and plots to `out`."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cuda = torch.cuda.is_available()
    if ddp:
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(cfg.seed)
    main = rank == 0
    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and (cuda or cpu_has_bf16()))

    def amp():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    parts, sources, val_sets = load_splits(cfg)
    classes = parts[0].classes
    soft = any(p.targets.ndim == 2 for p in parts)
    x_train = torch.from_numpy(to_input(np.concatenate([p.images for p in parts]))).to(device)
    y_train = torch.from_numpy(np.concatenate([soft_targets(p) if soft else p.targets for p in parts])).to(device)
    sizes, weights = [len(p) for p in parts], [s.weight for s in sources]
    vals = [(v.source, torch.from_numpy(to_input(v.images)).to(device), torch.from_numpy(v.labels).to(device))
            for v in val_sets]

    model = build_model(cfg.arch, n_classes=len(classes), dropout=cfg.dropout).to(device)
    if cfg.init_from:
        model.load_state_dict(checkpoint.load(cfg.init_from)["state_dict"])
    model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    per_rank = max(1, cfg.batch_size // world)
    per_epoch = sum(round(w * n) for n, w in zip(sizes, weights, strict=True))
    steps = max(1, per_epoch // (per_rank * world))
    sched = Schedule(opt, cfg, steps)
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    prior = torch.from_numpy(class_prior(parts, weights))
    logit_offset = cfg.logit_adjust * prior.clamp(min=1e-6).log().to(device) if cfg.logit_adjust else None

    out.mkdir(parents=True, exist_ok=True)
    history, start, best = [], 0, {"val_accuracy": -1.0}
    if resume:
        blob = checkpoint.load(out / "last.pt")
        model.load_state_dict(blob["state_dict"])
        ts = blob["train_state"]
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["schedule"])
        history, start, best = ts["history"], ts["epoch"] + 1, ts["best"]
        if main:
            print(f"resuming {out / 'last.pt'} at epoch {start + 1}")
    trainable, total = count_params(model)
    metadata = {
        "arch": cfg.arch, "classes": list(classes), "input_size": INPUT_SIZE, "in_channels": 1,
        "normalization": NORMALIZATION, "params": {"trainable": trainable, "total": total},
        "data": {"train": " + ".join(p.source for p in parts), "n_train": per_epoch,
                 "val": " + ".join(v.source for v in val_sets), "n_val": sum(len(v) for v in val_sets),
                 "sources": source_report(parts, sources),
                 "prior": dict(zip(classes, prior.tolist()))},
        "config": asdict(cfg), "git_commit": git_commit(), "torch": str(torch.__version__),
        "bf16": use_bf16, "processes": world,
    }
    if main:
        print(f"{cfg.arch}: {trainable:,} trainable params, {per_epoch} train crops an epoch / "
              f"{metadata['data']['n_val']} val crops, {world} process(es), {device}, "
              f"bf16={'on' if use_bf16 else 'off'}")
        for row in metadata["data"]["sources"]:
            print(format_source(row))
    gen = torch.Generator().manual_seed(cfg.seed + start)
    bad_epochs = 0
    for epoch in range(start, cfg.epochs):
        net.train()
        t0 = time.time()
        perm = epoch_index(sizes, weights, gen).to(device)
        loss_sum = correct = seen = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not main, leave=False, mininterval=2,
                   dynamic_ncols=True)
        for step in bar:
            idx = perm[step * per_rank * world:(step + 1) * per_rank * world][rank::world]
            xb = augment(x_train[idx], cfg, gen).contiguous(memory_format=torch.channels_last)
            yb = y_train[idx]
            lr = sched.step(epoch, step)
            loss, logits = train_step(net, opt, xb, yb, cfg.label_smoothing, amp, logit_offset)
            hard = yb.argmax(1) if yb.ndim == 2 else yb
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == hard).sum().item()
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2g}",
                            refresh=False)
        # validation on this rank's shard, then all-reduce so every rank agrees
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
        if ddp:
            dist.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}
        reports = {}
        for name, x_val, y_val in vals:
            cm, val_loss = evaluate_logits(model, x_val[rank::world], y_val[rank::world], len(classes), 512,
                                           cfg.tta_flip, amp)
            cm_t, loss_t = torch.from_numpy(cm).view(-1), torch.tensor([val_loss], dtype=torch.float64)
            if ddp:
                dist.all_reduce(cm_t)
                dist.all_reduce(loss_t)
            reports[name] = report = report_from_confusion(cm_t.view(len(classes), -1).numpy(), classes)
            if len(reports) == 1:
                val_loss = loss_t.item() / max(report["n"], 1)
                row.update(val_loss=val_loss, val_accuracy=report["accuracy"], val_macro_f1=report["macro_f1"])
            else:
                row[f"val_accuracy/{name}"] = report["accuracy"]
        row["val_score"] = row["val_accuracy"] if cfg.select == "first" else \
            float(np.mean([r["accuracy"] for r in reports.values()]))
        report = reports[vals[0][0]]
        sched.end_epoch(row["val_loss"])
        row.update(lr=opt.param_groups[0]["lr"], epoch_time_s=time.time() - t0)
        history.append(row)
        improved = row["val_score"] > best.get("val_score", best["val_accuracy"])
        bad_epochs = 0 if improved else bad_epochs + 1
        if improved:
            best = {**row, "report": report}
        if main:
            save_epoch(out, model, metadata, history, best, improved, opt, sched, epoch, report, classes)
            others = "".join(f"  {k.split('/', 1)[1]} {v:.4f}" for k, v in row.items() if k.startswith("val_accuracy/"))
            print(f"epoch {epoch + 1:3d}  loss {row['train_loss']:.3f}  acc {row['train_accuracy']:.3f}  "
                  f"val_loss {row['val_loss']:.3f}  val_acc {row['val_accuracy']:.4f}  val_f1 {row['val_macro_f1']:.4f}"
                  f"{others}  "
                  f"lr {row['lr']:.2g}  {row['epoch_time_s']:.1f}s{'  *best' if improved else ''}", flush=True)
        if cfg.early_stop_patience and bad_epochs >= cfg.early_stop_patience:
            if main:
                print(f"early stop: no better val accuracy for {bad_epochs} epochs")
            break
    if main and "report" in best:
        print(f"best epoch {best['epoch']}:\n{format_report(best['report'])}")
    if ddp:
        dist.destroy_process_group()
    return best


def class_prior(parts: list[Dataset], weights: list[float]) -> np.ndarray:
    """The class shares of an epoch's targets (C,): each source's mean target, by its draws per epoch."""
    draws = np.array([w * len(p) for p, w in zip(parts, weights, strict=True)])
    means = np.stack([soft_targets(p).mean(0) for p in parts])
    return ((draws[:, None] * means).sum(0) / draws.sum()).astype(np.float32)


def source_report(parts: list[Dataset], sources: list) -> list[dict]:
    """Per training source: crops used, drawn per epoch, images without a face, unreadable, how framed."""
    return [{"name": src.name, "path": src.path, "crops": len(d), "per_epoch": round(src.weight * len(d)),
             "weight": src.weight, "no_face": int(d.skipped.get("no face found", 0)),
             "unreadable": int(d.skipped.get("unreadable image", 0)), "framing": dict(d.framing),
             "below_floor": int(d.skipped.get("below the pseudo-label floor", 0)),
             "targets": "soft" if d.targets.ndim == 2 else "labels"} for d, src in zip(parts, sources, strict=True)]


def format_source(row: dict) -> str:
    framed = f", {row['no_face']} without a face" if row["framing"] else ""
    bad = f", {row['unreadable']} unreadable" if row["unreadable"] else ""
    bad += f", {row['below_floor']} below the pseudo-label floor" if row["below_floor"] else ""
    return (f"  {row['name']}: {row['crops']} crops ({row['targets']}{framed}{bad}), {row['per_epoch']} an epoch "
            f"(weight {row['weight']:g})")


def save_epoch(out: Path, model, metadata, history, best, improved, opt, sched, epoch, report, classes) -> None:
    """Append metrics, redraw plots, write last.pt (with optimizer state) and best.pt."""
    with open(out / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)
    plot_curves(history, out / "curves.png")
    best_metrics = {k: v for k, v in best.items() if k != "report"}
    meta = {**metadata, "epoch": epoch + 1, "metrics": best_metrics}
    if improved:
        checkpoint.save(out / "best.pt", model, {**meta, "metrics": {**best_metrics, "report": report}})
        plot_confusion(report["confusion"], classes, out / "confusion.png",
                       f"validation, epoch {epoch + 1}: acc {report['accuracy']:.3f}")
        (out / "best_report.json").write_text(json.dumps(report, indent=1))
    state = {"optimizer": opt.state_dict(), "schedule": sched.state_dict(), "epoch": epoch,
             "history": history, "best": best}
    checkpoint.save(out / "last.pt", model, meta, train_state=state)
