"""`fer-ros` command line: one subcommand per module, imported only when chosen.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

import argparse
import importlib
import sys

from . import __version__
from .errors import FerRosError

COMMANDS = {
    "train": ("fer_ros.train", "train ARCH-1..4 from a YAML config (needs torch)"),
    "evaluate": ("fer_ros.evaluate", "score a model on FER2013/FER+ CSVs or an image folder"),
    "export": ("fer_ros.export", "export a checkpoint to ONNX, a TensorRT engine or int8 ONNX"),
    "infer": ("fer_ros.infer", "run the face pipeline on an image, folder, video or camera"),
    "bench": ("fer_ros.bench", "benchmark training, inference, the frame pipeline and replay"),
    "replay": ("fer_ros.replay", "run the node's pipeline over a rosbag2 and report accuracy and speed"),
    "bag": ("fer_ros.bagtools", "rosbag2 tools without ROS: make a bag from a video, show bag info"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-ros", description="Facial expression recognition for ROS 2 robots and virtual agents.")
    parser.add_argument("--version", action="version", version=f"fer-ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run(args) or 0
    except FerRosError as e:
        print(f"fer-ros {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fer-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
