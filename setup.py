"""pip install of the ROS-free library and the `fer-ros` CLI.

Under colcon the package is built by CMakeLists.txt instead (see README, "Building with colcon").
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """Copy msg/*.msg into the package, so a wheel can write the node's messages to bags without ROS."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "fer_ros" / "interfaces" / "fer_ros" / "msg"
        target.mkdir(parents=True, exist_ok=True)
        for msg in Path(__file__).resolve().parent.joinpath("msg").glob("*.msg"):
            shutil.copy(msg, target)


setup(
    name="fer_ros",
    version="0.1.0",
    description="Facial expression recognition for ROS 2 robots and virtual agents (Chowanda 2021 ARCH-1)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fer_ros", "fer_ros.*"]),
    # the shipped models, the default parameters, and the .msg definitions replay needs to write bags without ROS
    package_data={"fer_ros": ["weights/*", "config/fer.yaml", "interfaces/README.md", "interfaces/*/msg/*.msg"]},
    cmdclass={"build_py": BuildPy},
    install_requires=["numpy>=1.23", "opencv-python>=4.8,<5", "onnxruntime>=1.16", "PyYAML>=6", "tqdm>=4.60"],
    extras_require={
        # torch: install torch==2.13.0 first on machines with a local CPU wheel (see README)
        "train": ["torch>=2.1", "matplotlib>=3.6", "onnx>=1.15", "onnxscript>=0.1"],
        "bag": ["rosbags>=0.10", "matplotlib>=3.6"],
        # many bags in one replay, on a local or an existing Dask cluster (docs/replay.md)
        "fleet": ["rosbags>=0.10", "matplotlib>=3.6", "distributed>=2024.1"],
        # cuda-python for CUDA 12 (JetPack 6, cu12 desktops; on CUDA 13 install cuda-python>=13,<14 instead),
        # 12.9.1+ for get_cuda_native_handle; onnx for the int8 and FP16 (TensorRT 11) ONNX that export writes.
        # TensorRT itself comes with JetPack or NVIDIA's pip index.
        "tensorrt": ["cuda-python>=12.9.1,<13", "onnx>=1.15"],
        "dev": ["torch>=2.1", "matplotlib>=3.6", "onnx>=1.15", "onnxscript>=0.1", "rosbags>=0.10",
                "catkin_pkg>=1.0", "pytest>=7", "hypothesis>=6", "ruff>=0.5", "distributed>=2024.1"],
    },
    entry_points={"console_scripts": ["fer-ros = fer_ros.cli:main"]},
)
