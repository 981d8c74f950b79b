"""How a face is found and framed for the classifier: one code path for the pipeline, evaluation and training.

A `Framer` holds the face parameters of a `PipelineConfig` (detector, its model, alignment, margin, minimum
face size) and turns an image into face boxes and 48x48 grey crops. The pipeline frames every frame with
it, and training and evaluation frame every photo with it, so a model learns from faces cut exactly as
the robot will show them.
"""

import numpy as np

from .config import PipelineConfig
from .vision.align import crop_faces
from .vision.faces import Detector, Face, make_detector


def detector_for(config: PipelineConfig) -> Detector:
    """The face detector `config` asks for."""
    return make_detector(config.detector, config.detector_model, detection_size=config.detection_size,
                         scale_factor=config.haar_scale_factor, min_neighbors=config.haar_min_neighbors,
                         thorough=config.haar_thorough, eyes=config.haar_eyes and config.align,  # eyes: alignment
                         score_threshold=config.detection_score)


class Framer:
    """Finds faces and cuts them out as the classifier sees them."""

    def __init__(self, config: PipelineConfig | None = None, size: int = 48):
        self.config = config or PipelineConfig()
        self.size = size
        self.detector = detector_for(self.config)

    def split_small(self, faces: list[Face]) -> tuple[list[Face], int]:
        """(the faces at least `min_face_size` on their shorter side, how many were smaller)."""
        big = [f for f in faces if min(f.box[2], f.box[3]) >= self.config.min_face_size]
        return big, len(faces) - len(big)

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(N, size, size) uint8 grey crops of `faces`: aligned by their landmarks unless `align` is off,
        widened by `margin`."""
        if not self.config.align:
            faces = [Face(f.box, f.score) for f in faces]
        return crop_faces(image, faces, self.size, self.config.margin)

    def largest(self, image: np.ndarray) -> np.ndarray | None:
        """The crop of the largest face in a still photo (a thorough scan), or None when it has none big enough."""
        faces, _ = self.split_small(self.detector.detect(image, still=True))
        if not faces:
            return None
        return self.crops(image, [max(faces, key=lambda f: f.box[2] * f.box[3])])[0]

    def signature(self) -> dict:
        """What decides a crop's pixels: the detector that runs (with its model's checksum) and the framing."""
        from .modelfile import sha256

        c = self.config
        model = getattr(self.detector, "path", None)
        return {"detector": self.detector.name, "detector_sha256": sha256(model.read_bytes()) if model else None,
                "detection_size": c.detection_size, "detection_score": c.detection_score,
                "haar": [c.haar_scale_factor, c.haar_min_neighbors, c.haar_eyes],
                "min_face_size": c.min_face_size, "align": c.align, "margin": c.margin, "size": self.size}
