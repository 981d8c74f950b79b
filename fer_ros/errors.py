"""Exceptions for bad input; the CLI prints them as one line and exits 2."""


class FerRosError(Exception):
    """Base: a problem with the user's input, explained in one line naming what and where."""


class ModelFileError(FerRosError):
    """A model file is missing, corrupt, mismatched or does not describe itself."""


class DataError(FerRosError):
    """A dataset file, row or image is unreadable or inconsistent."""


class ImageError(FerRosError):
    """An image buffer is empty, truncated, wrongly strided or in an unknown encoding."""


class BagError(FerRosError):
    """A rosbag2 file is unreadable or lacks what was asked for."""
