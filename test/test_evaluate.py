import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fer_csv

from fer_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("torch", reason="the torch backend and test model need torch")


def test_evaluate_json_report_on_a_fer2013_csv(tmp_path, onnx_model, capsys):
    labels = [i % 7 for i in range(30)]
    csv = write_fer_csv(tmp_path / "fer.csv", labels, ["PublicTest"] * 20 + ["Training"] * 10)
    assert main(["evaluate", "--model", str(onnx_model), "--data", str(csv), "--split", "PublicTest",
                 "--json", "--confusion", str(tmp_path / "cm.png")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 20 and set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad",
                                                              "surprise", "neutral"}
    cm = np.array(report["confusion"])
    assert cm.sum() == 20 and np.trace(cm) / 20 == pytest.approx(report["accuracy"])
    assert 0 <= report["macro_f1"] <= 1 and (tmp_path / "cm.png").stat().st_size > 0


def test_evaluate_torch_and_onnx_agree(tmp_path, onnx_model, capsys):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(40)])
    reports = []
    for model in (onnx_model, onnx_model.with_suffix(".pt")):
        main(["evaluate", "--model", str(model), "--data", str(csv), "--json"])
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert reports[0]["confusion"] == reports[1]["confusion"]


def test_classes_the_model_lacks_are_reported_not_guessed(tmp_path, onnx_model, capsys):
    import cv2

    rng = np.random.default_rng(1)
    for folder in ("happy", "contempt"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    main(["evaluate", "--model", str(onnx_model), "--data", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 2 and report["skipped"] == {"class unknown to the model: contempt": 2}


def test_bad_data_is_one_line_error(tmp_path, onnx_model, capsys):
    (tmp_path / "x.csv").write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    assert main(["evaluate", "--model", str(onnx_model), "--data", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "x.csv: row 2: bad pixels" in err and "--skip-bad" in err


def test_repeated_model_scores_an_ensemble(tmp_path, onnx_model, capsys):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(30)])
    reports = []
    for models in ([onnx_model], [onnx_model, onnx_model.with_suffix(".pt")]):
        main(["evaluate", *(a for m in models for a in ("--model", str(m))), "--data", str(csv), "--json"])
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert reports[0]["confusion"] == reports[1]["confusion"]  # the mean of one model and its twin
    assert reports[1]["model"] == f"{onnx_model} + {onnx_model.with_suffix('.pt')}"
    if onnx_model.with_name("ferplus_arch1.onnx").is_file():
        assert main(["evaluate", "--model", str(onnx_model), "--model", "ferplus", "--data", str(csv)]) == 2
        assert "classes" in capsys.readouterr().err


def test_zoom_view_is_scored_and_swept(tmp_path, onnx_model, capsys):
    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(30)], seed=3)
    reports = {}
    for zoom in ("1.0", "1.1"):
        main(["evaluate", "--model", str(onnx_model), "--data", str(csv), "--flip", "--zoom", zoom, "--json"])
        reports[zoom] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reports["1.1"]["zoom"] == 1.1 and reports["1.0"]["zoom"] == 1.0 and reports["1.1"]["flip"]
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(onnx_model), "--data", str(csv), "--zoom", "0"])
    assert "not a zoom factor > 0" in capsys.readouterr().err
    script = str(ROOT / "training" / "zoom_sweep.py")
    out = subprocess.run([sys.executable, script, "--model", str(onnx_model), "--held-out",
                          str(onnx_model.with_suffix(".pt")), "--data", str(csv), "--split", "Training",
                          "--factor", "1.1"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    accuracies = f"{reports['1.0']['accuracy']:.2%} | {reports['1.1']['accuracy']:.2%} |"
    assert out[0] == "| model | mirror | + zoom 1.1 |" and out[2].endswith(f" | {accuracies}")
    assert out[3].endswith(f"(not in the mean) | {accuracies}") and out[4].startswith("| mean gain of the 1 | |")
