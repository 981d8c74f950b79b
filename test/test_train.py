import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import FER2013, ROOT, need, write_fer_csv

torch = pytest.importorskip("torch", reason="training extras (torch) not installed")

from fer_ros.cli import main  # noqa: E402
from fer_ros.errors import ModelFileError  # noqa: E402
from fer_ros.learning import checkpoint  # noqa: E402
from fer_ros.learning.data import load_dataset  # noqa: E402
from fer_ros.learning.train import TrainConfig, distill_targets, erase, train  # noqa: E402

QUICK = dict(optimizer="adam", lr=2e-3, schedule="constant", warmup_epochs=0, batch_size=32, dropout=0.0,
             rotation=0, shift=0, zoom=0, hflip=False, bf16="off")


def test_short_real_run_loss_falls_and_checkpoints_describe_themselves(tmp_path):
    cfg = TrainConfig(data=str(need(FER2013)), max_rows=400, epochs=3, **QUICK)
    best = train(cfg, tmp_path)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert best["val_accuracy"] > 1 / 7  # above chance after 1,200 steps of real data
    for name in ("best.pt", "last.pt", "curves.png", "confusion.png", "best_report.json"):
        assert (tmp_path / name).stat().st_size > 0
    model, meta = checkpoint.load_model(tmp_path / "best.pt")
    assert meta["arch"] == "arch1" and len(meta["classes"]) == 7 and meta["input_size"] == 48
    assert meta["metrics"]["val_accuracy"] == best["val_accuracy"]
    assert meta["config"]["max_rows"] == 400 and "git_commit" in meta


def test_resume_continues_where_it_stopped(tmp_path):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(64)], ["Training"] * 48 + ["PublicTest"] * 16)
    cfg = TrainConfig(data=str(csv), epochs=1, **QUICK)
    train(cfg, tmp_path / "run")
    cfg.epochs = 2
    train(cfg, tmp_path / "run", resume=True)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]


def test_tampered_checkpoint_is_refused(tmp_path):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)], ["Training"] * 32 + ["PublicTest"] * 8)
    train(TrainConfig(data=str(csv), epochs=1, **QUICK), tmp_path)
    blob = torch.load(tmp_path / "best.pt", weights_only=True)
    blob["state_dict"]["head.1.bias"] += 1
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="checksum"):
        checkpoint.load(tmp_path / "bad.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "best.pt").read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="trunc.pt: not a readable"):
        checkpoint.load(tmp_path / "trunc.pt")


def test_ddp_two_cpu_processes(tmp_path):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(96)], ["Training"] * 64 + ["PublicTest"] * 32)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**QUICK, "data": str(csv), "epochs": 2}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "fer_ros", "train", "--config", str(config), "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stdout
    history = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[0]["val_accuracy"] >= 0
    _, meta = checkpoint.load_model(tmp_path / "ddp" / "last.pt")
    assert meta["processes"] == 2


def test_init_from_starts_at_the_given_weights(tmp_path):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)], ["Training"] * 32 + ["PublicTest"] * 8)
    train(TrainConfig(data=str(csv), epochs=1, **QUICK), tmp_path / "a")
    train(TrainConfig(data=str(csv), epochs=1, init_from=str(tmp_path / "a" / "last.pt"),
                      **{**QUICK, "lr": 0.0}), tmp_path / "b")
    a = checkpoint.load(tmp_path / "a" / "last.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "b" / "last.pt")["state_dict"]
    assert torch.equal(a["features.0.weight"], b["features.0.weight"])  # lr 0: the weights it started from


def test_distillation_mixes_labels_with_the_teachers_probabilities(tmp_path):
    import numpy as np

    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)], ["Training"] * 32 + ["PublicTest"] * 8)
    train(TrainConfig(data=str(csv), epochs=1, **QUICK), tmp_path / "teacher")
    teacher = str(tmp_path / "teacher" / "best.pt")
    data = load_dataset(str(csv), "Training")
    rows = np.arange(len(data))
    labels_only = distill_targets(TrainConfig(teacher=teacher, distill_weight=0.0), data)
    assert np.array_equal(labels_only, np.eye(7, dtype=np.float32)[data.labels])
    mixed = distill_targets(TrainConfig(teacher=teacher, distill_weight=0.5, distill_temperature=2.0), data)
    assert np.allclose(mixed.sum(1), 1.0, atol=1e-5)
    assert (mixed[rows, data.labels] >= 0.5).all() and (mixed[rows, data.labels] < 1.0).all()
    colder = distill_targets(TrainConfig(teacher=teacher, distill_weight=1.0, distill_temperature=0.5), data)
    hotter = distill_targets(TrainConfig(teacher=teacher, distill_weight=1.0, distill_temperature=4.0), data)
    assert (colder.max(1) > hotter.max(1)).all()  # temperature softens the teacher
    train(TrainConfig(data=str(csv), epochs=1, **{**QUICK, "seed": 1}), tmp_path / "other")
    other = str(tmp_path / "other" / "best.pt")
    ensemble = distill_targets(TrainConfig(teacher=[teacher, other], distill_weight=1.0), data)
    alone = [distill_targets(TrainConfig(teacher=t, distill_weight=1.0), data) for t in (teacher, other)]
    assert np.allclose(ensemble, (alone[0] + alone[1]) / 2, atol=1e-6) and not np.allclose(*alone)
    train(TrainConfig(data=str(csv), epochs=1, teacher=teacher, **QUICK), tmp_path / "student")
    assert checkpoint.load(tmp_path / "student" / "best.pt")["metadata"]["config"]["teacher"] == teacher


def test_teacher_probabilities_are_kept_beside_the_teacher_and_read_back(tmp_path):
    import numpy as np

    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)], ["Training"] * 32 + ["PublicTest"] * 8)
    train(TrainConfig(data=str(csv), epochs=1, **QUICK), tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "best.pt"
    data = load_dataset(str(csv), "Training")
    first = distill_targets(TrainConfig(teacher=str(teacher), distill_weight=1.0), data)
    kept = list((tmp_path / "teacher" / "best.pt.probs").glob("*.npy"))
    assert len(kept) == 1
    np.save(kept[0], np.full_like(np.load(kept[0]), 1 / 7))  # what is read back is the file
    assert np.allclose(distill_targets(TrainConfig(teacher=str(teacher), distill_weight=1.0), data), 1 / 7)
    assert not np.allclose(first, 1 / 7)
    distill_targets(TrainConfig(teacher=str(teacher), distill_weight=1.0, distill_temperature=3.0), data)
    assert len(list(kept[0].parent.glob("*.npy"))) == 2, "another temperature is another file"
    own = distill_targets(TrainConfig(teacher=str(teacher), distill_weight=1.0, distill_mirror=False), data)
    model, _ = checkpoint.load_model(teacher)
    with torch.no_grad():
        direct = torch.softmax(model(torch.from_numpy(__import__("fer_ros.preprocess", fromlist=["x"]).to_input(
            data.images))) / 2.0, 1).numpy()
    assert np.allclose(own, direct, atol=1e-5), "distill_mirror=False: the image's own probabilities"
    assert len(list(kept[0].parent.glob("*.npy"))) == 3


def test_capture_shift_augmentation_changes_only_the_images_it_hits():
    from fer_ros.learning.train import capture_shift

    x = torch.rand(400, 1, 48, 48) * 0.5 + 0.25
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(capture_shift(x, TrainConfig(), gen), x)
    for knob in ("lowres", "blur", "photometric", "noise"):
        y = capture_shift(x, TrainConfig(**{knob: 0.5}), gen)
        changed = (y - x).abs().flatten(1).amax(1) > 1e-6
        assert 0.35 < changed.float().mean() < 0.65, knob
        assert y.min() >= 0 and y.max() <= 1 and y.shape == x.shape
    blurred = capture_shift(x, TrainConfig(blur=1.0), gen)
    assert blurred.std() < x.std()  # blur smooths the noise image


def test_logit_adjusted_loss_sees_the_prior_added_to_the_logits():
    """With logits + log(prior) in the loss, a model that outputs the same logits for every class already
    fits the label distribution: one step leaves it as it is, where the plain loss moves it towards happy."""
    import contextlib

    from fer_ros.learning.train import train_step

    y = torch.tensor([3] * 12 + [1] * 1 + [0] * 3)
    prior = torch.bincount(y, minlength=7).float() / len(y)
    biases = {}
    for name, offset in (("plain", None), ("adjusted", prior.clamp(min=1e-6).log())):
        net = torch.nn.Linear(1, 7)
        torch.nn.init.zeros_(net.weight)
        torch.nn.init.zeros_(net.bias)
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        train_step(net, opt, torch.zeros(len(y), 1), y, 0.0, contextlib.nullcontext, offset)
        biases[name] = net.bias.detach()
    assert biases["plain"][3] > 0.1 and biases["plain"][1] < 0
    assert biases["adjusted"].abs().max() < 1e-4 < biases["plain"].abs().max()


def test_erasing_blanks_one_rectangle_in_about_p_of_the_images():
    x = torch.rand(2000, 1, 48, 48)
    y = erase(x, 0.5, torch.Generator().manual_seed(0))
    changed = (y != x).flatten(1)
    hit = changed.any(1)
    assert 0.45 < hit.float().mean() < 0.55
    share = changed[hit].float().mean(1)
    assert share.min() > 0.01 and share.max() < 0.34  # 2-33% of the crop
    rows, cols = changed[hit].view(-1, 48, 48).any(2), changed[hit].view(-1, 48, 48).any(1)
    assert torch.equal(changed[hit].sum(1), rows.sum(1) * cols.sum(1))  # one axis-aligned rectangle
    fill = torch.where(changed[hit].view(-1, 1, 48, 48), y[hit], float("nan")).nanmean((1, 2, 3))
    assert torch.allclose(fill, x[hit].mean((1, 2, 3)))  # blanked to each image's mean grey
    assert torch.equal(erase(x, 0.0, torch.Generator()), x)


def test_set_overrides_any_config_key(tmp_path, capsys):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)], ["Training"] * 32 + ["PublicTest"] * 8)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": str(csv), **QUICK}))
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--set", "epochs=1", "--set", "seed=3"]) == 0
    assert checkpoint.load(tmp_path / "run" / "last.pt")["metadata"]["config"]["seed"] == 3
    assert main([*argv, "--set", "seed"]) == 2
    assert main([*argv, "--set", "seed=three"]) == 2
    err = capsys.readouterr().err
    assert "--set seed: write KEY=VALUE" in err and "seed must be int" in err


@pytest.mark.parametrize("config", sorted((ROOT / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_reads(config):
    cfg = TrainConfig.from_yaml(config)
    assert cfg.val_split == "PublicTest"  # PrivateTest stays held back
    teachers = [cfg.teacher] if isinstance(cfg.teacher, str) else cfg.teacher or []
    assert all(t.endswith(".pt") for t in teachers)


@pytest.mark.parametrize("text, error", [("epochs: '80'\n", "epochs must be int"), ("arch: resnet\n", "unknown arch"),
                                         ("lr 0.1\n", "a mapping"), ("epoch: 3\n", "unknown config keys"),
                                         ("teacher: 3\n", "teacher must be str or list")])
def test_bad_configs_are_one_line_errors(tmp_path, text, error):
    from fer_ros.errors import DataError

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(DataError, match=error):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(DataError, match="cannot read"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_compare_archs_builds_the_table_and_reuses_finished_runs(tmp_path):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(48)], ["Training"] * 32 + ["PublicTest"] * 16)
    cmd = [sys.executable, str(ROOT / "training" / "compare_archs.py"), "--epochs", "1", "--archs", "arch1",
           "arch3", "--data", str(csv), "--out", str(tmp_path / "cmp")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    table = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert table[0].startswith("| arch | trainable params | M MACs / face | PublicTest acc |")
    assert table[2].startswith("| arch1 | 292,863 | 20.8 |") and table[3].startswith("| arch3 | 304,719 | 27.7 |")
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [r["epochs"] for r in rows] == [1, 1] and all(r["s_per_epoch"] > 0 for r in rows)
    (tmp_path / "cmp" / "arch1" / "last.pt").unlink()  # a finished arch is not trained again
    again = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    assert again.stdout.splitlines()[:4] == table[:4]
