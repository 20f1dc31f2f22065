"""l2l_ros: meta-trained spiking policies for ROS 2 robots."""
import os as _os

# MuJoCo picks its OpenGL platform when it is first imported. Without a display, EGL
# renders offscreen (Mesa's software rasteriser where there is no GPU); GLFW would fail.
if not _os.environ.get("DISPLAY") and not _os.environ.get("WAYLAND_DISPLAY"):
    _os.environ.setdefault("MUJOCO_GL", "egl")
