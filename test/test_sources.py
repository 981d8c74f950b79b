"""Multi-source training data (fer_ros.learning.sources): sources and weights, the crop cache and its
invalidation, train/dev grouping, framing parity with the pipeline, and teacher targets."""

import os
import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import FACES, FER2013, YUNET, need, write_fer_csv

from fer_ros.config import load_config
from fer_ros.errors import DataError
from fer_ros.framing import Framer
from fer_ros.learning.data import UNLABELLED
from fer_ros.learning.sources import Source, dev_groups, groups_of, load_source

PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "happy_black.jpg",
          "sad_asian.jpg", "surprise_white.jpg", "angry_black.jpg")


@pytest.fixture(scope="module")
def framer():
    return Framer(load_config(detector_model=str(need(YUNET))))


@pytest.fixture
def photo_folder(tmp_path):
    """Real face photos in class folders, named <performer>_<n>.jpg: performers p0..p3, two photos each, plus a
    photo with no face (a grey card)."""
    root = tmp_path / "posed"
    for i, name in enumerate(PHOTOS):
        folder = root / ("happy" if i % 2 else "sad")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(need(FACES / name), folder / f"p{i // 2}_{i}.jpg")
    cv2.imwrite(str(root / "sad" / "p0_card.jpg"), np.full((120, 100, 3), 128, np.uint8))
    return root


def test_a_source_is_checked_before_any_work(tmp_path):
    (tmp_path / "f").mkdir()
    for spec, why in [({"path": str(tmp_path / "none")}, "no such file or folder"),
                      ({"path": str(tmp_path / "f"), "wieght": 2}, "unknown source keys ['wieght']"),
                      ({"path": str(tmp_path / "f"), "weight": 0}, "weight must be within 0..100"),
                      ({"path": str(tmp_path / "f"), "split": "train"}, "needs a group"),
                      ({"path": str(tmp_path / "f"), "split": "val", "group": "(x)"}, "a folder's split is one of"),
                      ({"path": str(tmp_path / "f"), "group": "no group"}, "is not a regular expression with a group"),
                      ({"path": str(tmp_path / "f"), "pseudo": 0.7}, "pseudo labels are for unlabelled sources"),
                      (["x"], "a source is a path or a mapping")]:
        with pytest.raises(DataError, match=re.escape(why)):
            Source.parse(spec, "sources[1]")
    assert Source.parse(str(tmp_path / "f"), "x").name == "f"


def test_groups_split_train_and_dev_apart():
    files = [f"{p:02d}{n}.jpg" for p in range(20) for n in range(5)]
    groups = groups_of(files, r"^(\d\d)")
    assert len(set(groups)) == 20 and groups[7] == "01"
    dev = dev_groups(groups, 0.2, seed=0)
    assert len(dev) == 4 and dev == dev_groups(groups, 0.2, seed=0) and dev != dev_groups(groups, 0.2, seed=1)
    films = groups_of(["50_50_001.jpg", "AlexEmma_0006.jpg", "AlexEmma_0130.jpg"], "^([^_]+)_")
    assert films.tolist() == ["50", "AlexEmma", "AlexEmma"]


def test_a_folder_is_framed_once_split_by_group_and_cached(photo_folder, framer, tmp_path):
    cache = tmp_path / "cache"
    spec = {"path": str(photo_folder), "group": "^(p\\d)_"}
    train = load_source(Source.parse({**spec, "split": "train"}, "s"), framer, cache)
    dev = load_source(Source.parse({**spec, "split": "dev"}, "s"), framer, cache)
    everything = load_source(Source.parse({**spec, "split": "all"}, "s"), framer, cache)
    assert len(list(cache.glob("*.npz"))) == 1  # one framing serves every split
    assert everything.skipped["no face found"] == 1 and everything.framing["face found by yunet"] == len(PHOTOS)
    assert len(train) + len(dev) == len(everything) == len(PHOTOS)
    assert not set(groups_of(train.files, "^(p\\d)_")) & set(groups_of(dev.files, "^(p\\d)_"))
    assert everything.images.shape[1:] == (48, 48) and everything.images.dtype == np.uint8


def test_the_cache_follows_the_files_and_the_framing(photo_folder, framer, tmp_path):
    cache = tmp_path / "cache"
    src = Source.parse(str(photo_folder), "s")
    first = load_source(src, framer, cache)
    again = load_source(src, framer, cache)
    assert np.array_equal(first.images, again.images) and len(list(cache.glob("*.npz"))) == 1
    # a changed photo frames again (a new key)
    photo = next(photo_folder.glob("happy/*.jpg"))
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10 ** 9))
    load_source(src, framer, cache)
    assert len(list(cache.glob("*.npz"))) == 2
    # a different framing (margin) frames again, and its crops differ
    wider = load_source(src, Framer(load_config(detector_model=str(YUNET), margin=0.2)), cache)
    assert len(list(cache.glob("*.npz"))) == 3 and not np.array_equal(wider.images, first.images)
    # a damaged cache file is framed again, not trusted
    for path in cache.glob("*.npz"):
        path.write_bytes(path.read_bytes()[:200])
    assert np.array_equal(load_source(src, framer, cache).images, again.images)


def test_training_frames_a_photo_exactly_as_the_pipeline_does(photo_folder, framer, onnx_model):
    """Framing parity: the crop training learns from gives the very probabilities the pipeline computes for that
    photo at run time (its detector, alignment, margin and minimum face size, one code path)."""
    from fer_ros.pipeline import Pipeline

    data = load_source(Source.parse(str(photo_folder), "s"), framer)
    pipeline = Pipeline(load_config(detector_model=str(YUNET), model=str(onnx_model)))
    for crop, name in list(zip(data.images, data.files, strict=True))[:3]:
        result = pipeline.process_image(cv2.imread(str(photo_folder / name)))
        biggest = max(result.faces, key=lambda f: f.box[2] * f.box[3])
        expected = pipeline.backend.classify(crop[None], pipeline.config.flip_average, pipeline.config.zoom_average)
        assert np.allclose(biggest.raw_probs, expected[0], atol=1e-6), name


def test_sampling_weights_set_each_sources_share_of_an_epoch():
    torch = pytest.importorskip("torch", reason="training extras (torch) not installed")
    from fer_ros.learning.sources import epoch_index

    gen = torch.Generator().manual_seed(0)
    index = epoch_index([100, 10, 40], [1.0, 2.5, 0.5], gen)
    counts = np.bincount(index.numpy(), minlength=150)
    assert len(index) == 100 + 25 + 20
    assert (counts[:100] == 1).all()  # weight 1: each once
    assert counts[100:110].min() == 2 and counts[100:110].sum() == 25  # 2.5: two passes and half a third
    assert set(np.unique(counts[110:])) == {0, 1} and counts[110:].sum() == 20  # 0.5: a fresh half, no repeats
    assert set(index[:20].tolist()) != set(epoch_index([100, 10, 40], [1.0, 2.5, 0.5], gen)[:20].tolist())


def test_the_class_prior_of_an_epoch_follows_the_sampling_weights():
    pytest.importorskip("torch", reason="training extras (torch) not installed")
    from fer_ros.classes import FER7
    from fer_ros.learning.data import Dataset
    from fer_ros.learning.train import class_prior

    happy = Dataset(np.zeros((10, 48, 48), np.uint8), np.full(10, FER7.index("happy")), FER7, "a")
    soft = np.zeros((5, 7), np.float32)
    soft[:, FER7.index("sad")] = soft[:, FER7.index("fear")] = 0.5
    mixed = Dataset(np.zeros((5, 48, 48), np.uint8), soft, FER7, "b")
    prior = class_prior([happy, mixed], [1.0, 4.0])  # 10 happy draws, 20 half sad / half fear
    assert prior[FER7.index("happy")] == pytest.approx(1 / 3) and prior[FER7.index("sad")] == pytest.approx(1 / 3)
    assert prior.sum() == pytest.approx(1)


def test_teacher_targets_for_labelled_unlabelled_and_pseudo_labelled_sources(photo_folder, framer, tmp_path):
    pytest.importorskip("torch", reason="training extras (torch) not installed")
    from fer_ros.inference import SHIPPED
    from fer_ros.learning.train import TrainConfig, source_targets, teacher_probs

    ferplus = SHIPPED["ferplus"].with_suffix(".pt")  # 8 classes: contempt is dropped, the rest renormalised
    teacher = tmp_path / ferplus.name
    shutil.copy(need(ferplus), teacher)
    cfg = TrainConfig(teacher=str(teacher), distill_weight=0.0, distill_temperature=1.0)
    labelled = load_source(Source.parse(str(photo_folder), "s"), framer)
    probs = teacher_probs(cfg, labelled)
    assert probs.shape == (len(labelled), 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert list(teacher.with_suffix(".pt.probs").glob("*.npy"))  # kept for later runs

    plain = source_targets(cfg, Source.parse(str(photo_folder), "s"), labelled)
    assert plain.targets.ndim == 1  # distill 0: the labels alone
    mixed = source_targets(cfg, Source.parse({"path": str(photo_folder), "distill": 0.3}, "s"), labelled)
    onehot = np.eye(7)[labelled.targets]
    assert np.allclose(mixed.targets, 0.7 * onehot + 0.3 * probs, atol=1e-6)

    unlabelled_src = Source.parse({"path": str(photo_folder), "labelled": False}, "u")
    pool = load_source(unlabelled_src, framer)
    assert (pool.targets == UNLABELLED).all()
    assert np.allclose(source_targets(cfg, unlabelled_src, pool).targets, teacher_probs(cfg, pool), atol=1e-6)
    floor = float(np.median(teacher_probs(cfg, pool).max(1)))
    pseudo = source_targets(cfg, Source.parse({"path": str(photo_folder), "labelled": False, "pseudo": floor}, "u"),
                            pool)
    kept = teacher_probs(cfg, pool).max(1) >= floor
    assert len(pseudo) == kept.sum() < len(pool)
    assert (pseudo.targets == teacher_probs(cfg, pool)[kept].argmax(1)).all()
    with pytest.raises(DataError, match="needs a teacher"):
        source_targets(TrainConfig(), unlabelled_src, pool)


def test_a_run_on_several_sources_reports_each(photo_folder, tmp_path):
    pytest.importorskip("torch", reason="training extras (torch) not installed")
    from fer_ros.learning import checkpoint
    from fer_ros.learning.train import TrainConfig, train

    csv = write_fer_csv(tmp_path / "fer.csv", [i % 7 for i in range(64)], ["Training"] * 48 + ["PublicTest"] * 16)
    cfg = TrainConfig(sources=[{"path": str(csv), "split": "Training"},
                               {"path": str(photo_folder), "weight": 3, "name": "posed"}],
                      val_sources=[{"path": str(csv), "split": "PublicTest"},
                                   {"path": str(photo_folder), "name": "posed dev"}],
                      select="mean", framing={"detector_model": str(need(YUNET))}, crop_cache=str(tmp_path / "c"),
                      epochs=1, batch_size=16, bf16="off")
    best = train(cfg, tmp_path / "run")
    assert "val_accuracy/posed dev" in best and best["val_score"] == pytest.approx(
        (best["val_accuracy"] + best["val_accuracy/posed dev"]) / 2)
    _, meta = checkpoint.load_model(tmp_path / "run" / "best.pt")
    rows = {r["name"]: r for r in meta["data"]["sources"]}
    assert rows["posed"]["crops"] == len(PHOTOS) and rows["posed"]["no_face"] == 1
    assert rows["posed"]["per_epoch"] == 3 * len(PHOTOS) and meta["data"]["n_train"] == 48 + 3 * len(PHOTOS)
    with pytest.raises(DataError, match=re.escape("sources[1]: unknown source keys")):
        TrainConfig(sources=[str(csv), {"path": str(csv), "wieght": 1}]).source_list("sources")


def test_the_mixture_configs_read_and_their_sources_resolve():
    from conftest import ROOT

    pytest.importorskip("torch", reason="training extras (torch) not installed")
    need(FER2013)
    from fer_ros.learning.train import TrainConfig

    os.chdir(ROOT)
    for name in ("mix", "mix_distill", "mix_pseudo"):
        cfg = TrainConfig.from_yaml(ROOT / "training" / "configs" / f"{name}.yaml")
        sources = cfg.source_list("sources")
        names = [s.name for s in sources]
        assert names[:2] == ["fer2013", "taiwan:train"] and cfg.select == "mean"
        assert [s.name for s in cfg.source_list("val_sources")][2:] == ["taiwan:dev", "sfew_train:dev"]
