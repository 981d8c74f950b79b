"""fer_ros: facial expression recognition for ROS 2 robots and virtual agents.

The library is ROS-free: image -> faces -> crops -> probabilities -> tracks -> messages.
Only the node module (`fer_ros.ros.node`) imports rclpy, and only the training and torch
backend modules import torch.
"""

__version__ = "0.1.0"
