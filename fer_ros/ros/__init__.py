"""The ROS wing: the node (the only module that imports rclpy), its ROS-free logic, messages, launch presets and the
expression listener."""
