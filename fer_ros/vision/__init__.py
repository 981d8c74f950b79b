"""The vision wing: image decoding, face detectors (YuNet and its model file, Haar), alignment, tracking, the visual
tracker, video and annotation. numpy and OpenCV only; it imports nothing of ros, bags or learning."""
