# The two set-up commands of the README: `make demo` runs the main job, `make test` the tests.
# Each installs what it needs. PY selects the interpreter (default: python3).
PY ?= python3
SHARED ?= ../shared
SOURCE ?= $(SHARED)/samples/video/pyfeat_single_face.mp4
# where `make demo` writes the annotated result: a folder for a folder, an image for an image, else an MP4
IMAGE_SUFFIXES := $(foreach e,jpg jpeg png bmp tif tiff pgm ppm webp,.$(e) .$(shell echo $(e) | tr a-z A-Z))
SAVE ?= $(if $(wildcard $(SOURCE)/.),demo,$(if $(filter $(IMAGE_SUFFIXES),$(suffix $(SOURCE))),demo$(suffix $(SOURCE)),demo.mp4))

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

demo: install  ## the face pipeline on SOURCE (a video, an image, a folder or a camera index): one JSON line per frame; the annotated result in SAVE (demo.mp4, demo.jpg or demo/)
	$(PY) -m fer_ros infer "$(SOURCE)" --save "$(SAVE)"
