"""Haar cascades wherever the installed OpenCV keeps them: cv2.data (pip's opencv-python) or the
distribution's folders (Debian/Ubuntu python3-opencv 4.5/4.6 has no cv2.data; opencv-data holds them)."""

import shutil
from pathlib import Path

import cv2
import pytest

from fer_ros.errors import ModelFileError
from fer_ros.vision import faces

NAME = "haarcascade_frontalface_default.xml"


def _installed() -> Path:
    """A folder with the cascades on this machine (either kind of OpenCV install)."""
    for folder in [getattr(getattr(cv2, "data", None), "haarcascades", ""), "/usr/share/opencv4/haarcascades",
                   "/usr/share/opencv/haarcascades"]:
        if folder and (Path(folder) / NAME).is_file():
            return Path(folder)
    pytest.skip("no Haar cascades installed here (pip install opencv-python, or apt install opencv-data)")


def test_cascades_load_from_the_installed_opencv():
    assert not faces._cascade(NAME).empty()
    print(f"OpenCV {cv2.__version__}, cv2.data: {hasattr(cv2, 'data')}")


def test_without_cv2_data_the_distribution_folders_are_searched(monkeypatch, tmp_path):
    folder = tmp_path / "share" / "opencv4" / "haarcascades"
    folder.mkdir(parents=True)
    shutil.copy(_installed() / NAME, folder)
    monkeypatch.delattr(cv2, "data", raising=False)  # as on Debian's and Ubuntu's python3-opencv
    monkeypatch.delenv("FER_ROS_HAARCASCADES", raising=False)
    assert not faces._cascade(NAME, extra_dirs=[tmp_path / "nothing", folder]).empty()
    monkeypatch.setenv("FER_ROS_HAARCASCADES", str(folder))
    assert not faces._cascade(NAME, extra_dirs=[]).empty()


def test_missing_cascades_name_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.delattr(cv2, "data", raising=False)
    monkeypatch.delenv("FER_ROS_HAARCASCADES", raising=False)
    with pytest.raises(ModelFileError) as e:
        faces._cascade(NAME, extra_dirs=[tmp_path])
    text = str(e.value)
    assert NAME in text and "opencv-data" in text and "apt install opencv-data" in text and str(tmp_path) in text
    bad = tmp_path / NAME
    bad.write_text("not a cascade")
    with pytest.raises(ModelFileError, match="unreadable"):
        faces._cascade(NAME, extra_dirs=[tmp_path])


def test_the_default_search_covers_the_distribution_folders(monkeypatch):
    seen = []
    monkeypatch.delattr(cv2, "data", raising=False)
    monkeypatch.delenv("FER_ROS_HAARCASCADES", raising=False)
    monkeypatch.setattr(Path, "is_file", lambda self: seen.append(str(self.parent)) or False)
    with pytest.raises(ModelFileError):
        faces._cascade(NAME)
    assert "/usr/share/opencv4/haarcascades" in seen and "/usr/share/opencv/haarcascades" in seen
