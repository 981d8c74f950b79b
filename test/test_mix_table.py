"""training/mix_table.py: the declared rule of issue 19 and the hard cases beside it."""

import importlib.util

import pytest
from conftest import ROOT, SHARED, need

spec = importlib.util.spec_from_file_location("mix_table", ROOT / "training" / "mix_table.py")
mix_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mix_table)


def row(*accs):
    return {s: {"accuracy": a} for s, a in zip(mix_table.SETS, accs)}


def test_the_rule_takes_the_best_mean_above_every_floor():
    rows = {"shipped": row(0.690, 0.726, 0.613, 0.475),
            "best mean, PublicTest below 68.5%": row(0.684, 0.90, 0.90, 0.90),
            "best mean, one CK+ image short": row(0.70, 0.725, 0.80, 0.80),
            "above every floor": row(0.686, 0.726, 0.62, 0.50),
            "above every floor, better": row(0.69, 0.74, 0.66, 0.52)}
    assert mix_table.choose(rows, "shipped") == "above every floor, better"
    del rows["above every floor"], rows["above every floor, better"]
    assert mix_table.choose(rows, "shipped") == "shipped"  # none clears every floor


def test_hard_cases_cost_the_shipped_model_accuracy(tmp_path):
    pytest.importorskip("torch", reason="the hard cases use the training's capture_shift")
    need(SHARED / "data" / "extra" / "taiwan")
    from fer_ros.inference import DEFAULT_MODEL

    hard = mix_table.hard_cases(str(DEFAULT_MODEL), tmp_path)
    assert hard["n"] > 700 and set(hard) == {"clean", "n", *mix_table.HARD}
    assert all(0.14 < hard[c] < hard["clean"] for c in mix_table.HARD)  # above chance, below clean
    assert mix_table.hard_cases(str(DEFAULT_MODEL), tmp_path) == hard  # the same crops, the same seed
