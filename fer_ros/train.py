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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from . import checkpoint
from .data import Dataset, load_dataset
from .errors import DataError
from .metrics import format_report, report_from_confusion
from .models import ARCHS, build_model, count_params
from .plots import plot_confusion, plot_curves
from .preprocess import INPUT_SIZE, NORMALIZATION, to_input


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
    tta_flip: bool = False  # validate on the mean of the image and its mirror
    seed: int = 0
    num_threads: int = 0  # torch threads per process; 0 = cores / processes
    bf16: str = "auto"  # auto | on | off: bf16 autocast on CPUs with AVX-512 BF16 / AMX, and on CUDA
    max_rows: int = 0  # use only the first N training rows (quick runs and tests); 0 = all
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning, warm restarts)
    teacher: str | list | None = None  # distil from this checkpoint (a list: their mean), see distill_targets
    distill_weight: float = 0.5  # share of the teacher's probabilities in each target (the rest: the label)
    distill_temperature: float = 2.0  # the teacher's logits are divided by this before the softmax
    extra: dict = field(default_factory=dict)  # free-form notes stored in the checkpoint

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a config; DataError naming the file and key for anything unreadable or mistyped."""
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise DataError(f"{path}: cannot read the training config ({e})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: a training config is a mapping of keys to values")
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(raw) - set(types))
        if unknown:
            raise DataError(f"{path}: unknown config keys {unknown}; known: {sorted(types)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(raw.get("bf16"), bool):  # YAML reads a bare on/off as a boolean
            raw["bf16"] = "on" if raw["bf16"] else "off"
        for key, value in raw.items():
            kinds = [a for a in typing.get_args(types[key]) if a is not type(None)] or [types[key]]
            accepted = tuple(kinds) + ((int,) if float in kinds else ())
            if value is not None and (not isinstance(value, accepted) or
                                      (isinstance(value, bool) and bool not in kinds)):
                raise DataError(f"{path}: {key} must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")
        if raw.get("arch", cls.arch) not in ARCHS:
            raise DataError(f"{path}: unknown arch {raw['arch']!r}: choose one of {', '.join(ARCHS)}")
        return cls(**raw)


def add_arguments(p) -> None:
    p.add_argument("--config", default="training/configs/fer2013.yaml",
                   help="YAML config (see training/configs; default: %(default)s)")
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
    overrides = {k: getattr(args, k) for k in ("arch", "data", "pixels", "epochs", "batch_size", "lr",
                                               "max_rows", "bf16")}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise DataError(f"--set {setting}: write KEY=VALUE, e.g. --set lr=0.01")
        overrides[key.strip()] = yaml.safe_load(value)
    cfg = TrainConfig.from_yaml(args.config, **overrides)
    train(cfg, Path(args.out), resume=args.resume)
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
    return erase(x, cfg.erase, gen) if cfg.erase > 0 else x


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


def train_step(net, opt, x: torch.Tensor, y: torch.Tensor, label_smoothing: float, amp):
    """One optimisation step on a batch; returns (loss, logits). y: labels or soft targets."""
    with amp():
        logits = net(x).float()
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, logits


def load_splits(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    train = load_dataset(cfg.data, cfg.train_split, pixels=cfg.pixels, soft=cfg.soft_labels)
    val = load_dataset(cfg.val_data or cfg.data, cfg.val_split, pixels=cfg.pixels, soft=False,
                       classes=train.classes)
    if cfg.max_rows:
        train = replace(train, images=train.images[:cfg.max_rows], targets=train.targets[:cfg.max_rows],
                        rows=None if train.rows is None else train.rows[:cfg.max_rows])
    if cfg.teacher:
        train = replace(train, targets=distill_targets(cfg, train))
    return train, val


@torch.no_grad()
def distill_targets(cfg: TrainConfig, data: Dataset) -> np.ndarray:
    """Soft targets (N, C): (1 - w) * label + w * the teacher's mirror-averaged probabilities at temperature T.

    The teacher sees each training crop once, unaugmented; its mirror average makes the targets
    fit a flipped crop as well as the original. A list of teachers is an ensemble: the mean of
    their probabilities.
    """
    x = torch.from_numpy(to_input(data.images))
    probs = 0
    teachers = [cfg.teacher] if isinstance(cfg.teacher, str) else cfg.teacher
    for path in teachers:
        teacher, meta = checkpoint.load_model(path)
        if tuple(meta["classes"]) != data.classes:
            raise DataError(f"{path}: the teacher's classes {meta['classes']} differ from the data's {data.classes}")
        probs = probs + torch.cat([F.softmax(teacher(xb) / cfg.distill_temperature, 1) +
                                   F.softmax(teacher(xb.flip(3)) / cfg.distill_temperature, 1)
                                   for xb in x.split(1024)]) / (2 * len(teachers))
    labels = torch.from_numpy(data.targets).float() if data.targets.ndim == 2 else \
        F.one_hot(torch.from_numpy(data.targets).long(), len(data.classes)).float()
    return ((1 - cfg.distill_weight) * labels + cfg.distill_weight * probs).numpy()


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

    train_set, val_set = load_splits(cfg)
    classes = train_set.classes
    x_train = torch.from_numpy(to_input(train_set.images)).to(device)
    y_train = torch.from_numpy(train_set.targets).to(device)
    x_val = torch.from_numpy(to_input(val_set.images)).to(device)
    y_val = torch.from_numpy(val_set.labels).to(device)

    model = build_model(cfg.arch, n_classes=len(classes), dropout=cfg.dropout).to(device)
    if cfg.init_from:
        model.load_state_dict(checkpoint.load(cfg.init_from)["state_dict"])
    model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    per_rank = max(1, cfg.batch_size // world)
    steps = max(1, len(x_train) // (per_rank * world))
    sched = Schedule(opt, cfg, steps)
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model

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
        "data": {"train": train_set.source, "n_train": len(train_set), "val": val_set.source, "n_val": len(val_set)},
        "config": asdict(cfg), "git_commit": git_commit(), "torch": str(torch.__version__),
        "bf16": use_bf16, "processes": world,
    }
    if main:
        print(f"{cfg.arch}: {trainable:,} trainable params, {len(train_set)} train / {len(val_set)} val crops, "
              f"{world} process(es), {device}, bf16={'on' if use_bf16 else 'off'}")
    gen = torch.Generator().manual_seed(cfg.seed + start)
    bad_epochs = 0
    for epoch in range(start, cfg.epochs):
        net.train()
        t0 = time.time()
        perm = torch.randperm(len(x_train), generator=gen).to(device)
        loss_sum = correct = seen = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not main, leave=False, mininterval=2,
                   dynamic_ncols=True)
        for step in bar:
            idx = perm[step * per_rank * world:(step + 1) * per_rank * world][rank::world]
            xb = augment(x_train[idx], cfg, gen).contiguous(memory_format=torch.channels_last)
            yb = y_train[idx]
            lr = sched.step(epoch, step)
            loss, logits = train_step(net, opt, xb, yb, cfg.label_smoothing, amp)
            hard = yb.argmax(1) if yb.ndim == 2 else yb
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == hard).sum().item()
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2g}",
                            refresh=False)
        # validation on this rank's shard, then all-reduce so every rank agrees
        cm, val_loss = evaluate_logits(model, x_val[rank::world], y_val[rank::world], len(classes), 512,
                                       cfg.tta_flip, amp)
        totals = torch.tensor([loss_sum, correct, seen, val_loss], dtype=torch.float64)
        cm_t = torch.from_numpy(cm)
        if ddp:
            dist.all_reduce(totals)
            dist.all_reduce(cm_t)
        loss_sum, correct, seen, val_loss = totals.tolist()
        report = report_from_confusion(cm_t.numpy(), classes)
        val_loss /= max(report["n"], 1)
        sched.end_epoch(val_loss)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
               "lr": opt.param_groups[0]["lr"], "epoch_time_s": time.time() - t0}
        history.append(row)
        improved = row["val_accuracy"] > best["val_accuracy"]
        bad_epochs = 0 if improved else bad_epochs + 1
        if improved:
            best = {**row, "report": report}
        if main:
            save_epoch(out, model, metadata, history, best, improved, opt, sched, epoch, report, classes)
            print(f"epoch {epoch + 1:3d}  loss {row['train_loss']:.3f}  acc {row['train_accuracy']:.3f}  "
                  f"val_loss {val_loss:.3f}  val_acc {row['val_accuracy']:.4f}  val_f1 {row['val_macro_f1']:.4f}  "
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
