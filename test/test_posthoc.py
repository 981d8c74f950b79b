"""Post-hoc edits of real (tiny) trained checkpoints: the prior correction and weight interpolation."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, write_fer_csv

torch = pytest.importorskip("torch", reason="training extras (torch) not installed")

from fer_ros.errors import ModelFileError  # noqa: E402
from fer_ros.learning import checkpoint  # noqa: E402
from fer_ros.learning.evaluate import evaluate  # noqa: E402
from fer_ros.learning.models import build_model  # noqa: E402
from fer_ros.learning.posthoc import correct, interpolate  # noqa: E402
from fer_ros.learning.train import TrainConfig, train  # noqa: E402
from fer_ros.modelfile import state_dict_sha256  # noqa: E402

QUICK = dict(optimizer="adam", lr=2e-3, schedule="constant", warmup_epochs=0, batch_size=16, dropout=0.0,
             rotation=0, shift=0, zoom=0, hflip=False, bf16="off")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A model and one fine-tuned from it, on a FER2013-format CSV."""
    tmp = tmp_path_factory.mktemp("posthoc")
    csv = write_fer_csv(tmp / "fer.csv", [i % 7 for i in range(56)], ["Training"] * 42 + ["PublicTest"] * 14)
    train(TrainConfig(data=str(csv), epochs=1, **QUICK), tmp / "a")
    train(TrainConfig(data=str(csv), epochs=2, init_from=str(tmp / "a" / "last.pt"), **QUICK), tmp / "b")
    return tmp, csv


def test_interpolation_mixes_every_weight_and_statistic(runs):
    tmp, csv = runs
    a, b = tmp / "a" / "last.pt", tmp / "b" / "last.pt"
    sa, sb = checkpoint.load(a)["state_dict"], checkpoint.load(b)["state_dict"]
    stats = [k for k in sa if k.endswith("running_mean")]
    assert stats and not torch.equal(sa[stats[0]], sb[stats[0]])
    for alpha, want in ((0.0, sa), (1.0, sb)):
        interpolate(a, b, alpha, tmp / "x.pt")
        got = checkpoint.load(tmp / "x.pt")["state_dict"]
        assert all(torch.allclose(got[k], want[k]) for k in sa if k.endswith(("weight", "bias", "mean", "var")))
    interpolate(a, b, 0.25, tmp / "q.pt")
    blob = checkpoint.load(tmp / "q.pt")
    got = blob["state_dict"]
    for k in ("features.0.weight", stats[0], "head.1.bias"):
        assert torch.allclose(got[k], 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6)
    meta = blob["metadata"]
    assert meta["interpolation"]["alpha"] == 0.25
    assert meta["interpolation"]["sha256"] == [state_dict_sha256(sa), state_dict_sha256(sb)]
    own = evaluate(str(tmp / "q.pt"), str(csv), "PublicTest", progress=False)
    assert meta["metrics"]["val_accuracy"] == own["accuracy"]  # its own score, not b's


def test_interpolation_refuses_two_different_networks_and_a_bad_alpha(runs, tmp_path):
    tmp, _ = runs
    a = tmp / "a" / "last.pt"
    meta = checkpoint.load(a)["metadata"]
    eight = tmp_path / "eight.pt"
    checkpoint.save(eight, build_model("arch1", n_classes=8), {**meta, "classes": [*meta["classes"], "contempt"]})
    with pytest.raises(ModelFileError, match="different classes"):
        interpolate(a, eight, 0.5, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="alpha"):
        interpolate(a, a, 1.5, tmp_path / "x.pt")
    r = subprocess.run([sys.executable, str(ROOT / "training" / "interpolate.py"), str(a), str(eight),
                        "--alpha", "0.5", "--out", str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "interpolate: error:" in r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_prior_correction_moves_only_the_head_bias(runs):
    tmp, _ = runs
    src = tmp / "b" / "last.pt"
    prior = correct(src, 0.5, tmp / "c.pt")
    before, after = checkpoint.load(src), checkpoint.load(tmp / "c.pt")
    shares = after["metadata"]["data"]["prior"]
    assert np.allclose(prior, [shares[c] for c in after["metadata"]["classes"]])
    shift = after["state_dict"]["head.1.bias"] - before["state_dict"]["head.1.bias"]
    assert torch.allclose(shift, -0.5 * torch.log(torch.from_numpy(prior).float()), atol=1e-6)
    assert all(torch.equal(v, after["state_dict"][k]) for k, v in before["state_dict"].items() if k != "head.1.bias")
    assert after["metadata"]["prior_correction"]["tau"] == 0.5
