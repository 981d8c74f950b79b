import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import FER2013, FERPLUS, ROOT, need, write_fer_csv

from fer_ros.classes import FER7, FERPLUS8, canonical
from fer_ros.errors import DataError
from fer_ros.learning.data import load_dataset, load_fer2013, load_ferplus
from fer_ros.preprocess import magnify, to_input


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_fer2013_csv_splits(tmp_path, suffix):
    path = write_fer_csv(tmp_path / f"fer{suffix}", [0, 3, 6, 1], ["Training", "Training", "PublicTest", "Training"])
    train = load_fer2013(path, "Training")
    assert train.images.shape == (3, 48, 48) and train.images.dtype == np.uint8
    assert list(train.labels) == [0, 3, 1] and train.classes == FER7
    assert list(load_fer2013(path, "PublicTest").labels) == [6]
    assert len(load_fer2013(path)) == 4


def test_bad_rows_name_file_and_row_or_are_counted(tmp_path):
    bad = {1: "3,1 2 3,Training", 2: "9," + " ".join(["0"] * 2304) + ",Training"}
    path = write_fer_csv(tmp_path / "fer.csv", [0, 0, 0, 5], bad_rows=bad)
    with pytest.raises(DataError, match=r"fer\.csv: row 3: bad pixels"):
        load_fer2013(path)
    data = load_fer2013(path, skip_bad=True)
    assert list(data.labels) == [0, 5]
    assert data.skipped == Counter({"bad pixels": 1, "unknown label": 1})


def test_not_a_fer_csv(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a FER2013 CSV"):
        load_fer2013(tmp_path / "x.csv")
    with pytest.raises(DataError, match="no such data file"):
        load_fer2013(tmp_path / "missing.csv")


def test_ferplus_votes_align_with_fer2013_rows(tmp_path):
    pixels = write_fer_csv(tmp_path / "fer.csv", [3, 1, 2, 3], ["Training"] * 3 + ["PublicTest"])
    votes = tmp_path / "fer2013new.csv"
    votes.write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                     "Training,a.png,0,10,0,0,0,0,0,0,0,0\n"
                     "Training,,0,0,0,0,0,0,0,0,0,10\n"
                     "Training,c.png,2,0,0,0,0,0,0,6,2,0\n"
                     "PublicTest,d.png,0,0,0,0,5,5,0,0,0,0\n")
    train = load_ferplus(votes, pixels, "Training")
    assert train.classes == FERPLUS8 and len(train) == 2 and train.skipped["not a face"] == 1
    assert np.allclose(train.targets.sum(1), 1)
    assert [FERPLUS8[i] for i in train.labels] == ["happy", "contempt"]
    assert np.array_equal(train.images[1], load_fer2013(pixels).images[2])  # row 3 of both files
    assert list(train.rows) == [0, 2] and list(load_fer2013(pixels, "Training").rows) == [0, 1, 2]
    script = str(ROOT / "training" / "label_agreement.py")
    agreement = subprocess.run([sys.executable, script, "--data", str(pixels), "--votes", str(votes),
                                "--split", "Training", "--model"], capture_output=True, text=True)
    assert "| happy | 1 | 100.0% | - |" in agreement.stdout  # FER+ says happy too
    assert "| fear | 1 | 0.0% | contempt |" in agreement.stdout
    assert "| all | 2 | 50.0% |" in agreement.stdout  # the not-a-face row is left out
    assert "of all 2 faces; " in agreement.stdout and "of the 1 where FER+ agrees" in agreement.stdout
    hard = load_dataset(votes, "PublicTest", pixels=pixels)
    assert hard.targets.ndim == 1 and FERPLUS8[hard.labels[0]] in ("angry", "disgust")
    with pytest.raises(DataError, match="--pixels"):
        load_dataset(votes)


def test_image_folder_maps_names_and_reports_unknown_classes(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for folder in ("Happiness", "sadness", "contempt"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    (tmp_path / "sadness" / "broken.png").write_bytes(b"not an image")
    data = load_dataset(tmp_path)
    assert sorted(FER7[i] for i in data.labels) == ["happy", "sad"]
    assert data.skipped == Counter({"class unknown to the model: contempt": 1, "unreadable image": 1})


def test_class_name_aliases():
    assert [canonical(n) for n in ("Anger", "happiness", "SURPRISED", "fearful", "Disgusted", "sadness")] == \
        ["angry", "happy", "surprise", "fear", "disgust", "sad"]
    assert canonical("bored") is None


def test_one_preprocessing_function_for_train_and_inference():
    crops = np.full((2, 48, 48), 255, np.uint8)
    x = to_input(crops)
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32 and np.allclose(x, 1.0)
    big = to_input([np.zeros((96, 96), np.uint8)])
    assert big.shape == (1, 1, 48, 48)


def test_magnify_enlarges_the_centre_of_each_image():
    x = np.zeros((2, 1, 48, 48), np.float32)
    x[0, 0, 18:30, 18:30] = 1.0  # a centred 12-pixel square
    x[1, 0, :, :24] = 1.0  # left half
    assert np.array_equal(magnify(x, 1.0), x)
    big = magnify(x, 2.0)
    assert big.shape == x.shape and big.dtype == np.float32
    assert (big[0, 0, 24] > 0.5).sum() == 24  # the square's side doubled
    assert np.allclose(big[1, 0, :, :23], 1) and np.allclose(big[1, 0, :, 25:], 0)  # an edge through the centre stays
    assert magnify(np.zeros((0, 1, 48, 48), np.float32), 1.1).shape == (0, 1, 48, 48)


def test_real_fer2013_and_ferplus_counts():
    train = load_fer2013(need(FER2013), "Training")
    assert train.counts() == {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830,
                              "surprise": 3171, "neutral": 4965}
    assert len(load_fer2013(FER2013, "PublicTest")) == 3589
    plus = load_ferplus(need(FERPLUS), FER2013, "PublicTest")
    assert len(plus) + plus.skipped["not a face"] == 3589
