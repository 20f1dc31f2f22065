"""l2l_ros: meta-trained spiking policies for ROS 2 robots."""
