"""The bags wing: rosbag2 reading and writing (rosbags, no ROS), bag tools, replay, its timeline and labels."""
