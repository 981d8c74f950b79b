# The two set-up commands of the README: `make demo` runs the main job, `make test` the tests.
# Each installs what it needs. PY selects the interpreter (default: python3).
PY ?= python3
SHARED ?= ../shared
SOURCE ?= $(SHARED)/samples/video/pyfeat_single_face.mp4

.PHONY: install dev test test-system-opencv demo

install:  ## runtime: numpy, OpenCV, ONNX Runtime (no torch)
	$(PY) -m pip install -q -e .

dev:  ## training, export, bags and test tools; torch 2.13.0 first so nothing pulls a newer build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"

test: dev test-system-opencv
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-system-opencv:  ## the runtime tests again on the distribution's OpenCV 4.6 and numpy 1.x (system Python; apt as root)
	.ci/system-opencv-tests

demo: install  ## the face pipeline on a clip (SOURCE=video, image, folder or camera index): one JSON line per frame and an annotated video
	$(PY) -m fer_ros infer $(SOURCE) --save demo.mp4
