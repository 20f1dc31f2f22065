#!/usr/bin/env bash
# Build msgs/tf2_msgs (tf2_msgs/msg/TFMessage) with the real rosidl pipeline and install it into
# a venv that holds ROS 2 Kilted from PyPI, which has no tf2_msgs wheel.
#
#   tools/build_tf2_msgs.sh [--force] [VENV]      (VENV defaults to .venv at the repository root)
#
# ament_cmake + rosidl_generate_interfaces (rosidl_adapter, type description, C, C++, Fast DDS and
# introspection type supports, rosidl_generator_py) configure against the venv itself, as a ROS
# prefix: the message wheels live there (lib/, share/, include/, lib/python3.11/site-packages), and
# the package installs there the same way, so rclpy finds it like geometry_msgs (ament index under
# share/, libraries in lib/ that ros_wheels_bootstrapper puts on LD_LIBRARY_PATH).
# Same package, type name, DDS type name and type hash as the real tf2_msgs, so it talks to tf2_ros,
# RViz and `ros2 topic echo /tf` of a full ROS install.
#
# Needs, in VENV: requirements-ros.txt (the build wheels, cmake and ninja) and numpy; on the machine:
# a C/C++ compiler (Debian: build-essential) and the venv Python's headers.
# Idempotent: does nothing when tf2_msgs already imports with its type support (a full ROS install,
# or an earlier run from the same sources); --force rebuilds anyway.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(cd "${1:-$root/.venv}" && pwd)
py=$venv/bin/python
src=$root/msgs/tf2_msgs
stamp=$venv/share/tf2_msgs/l2l_source.sha256
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}

[ -x "$py" ] || { echo "build_tf2_msgs: no Python at $py" >&2; exit 1; }

# Sorted list of the package's source files, hashed: a change to any of them means a rebuild.
source_hash=$(cd "$src" && find . -type f ! -name '*~' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

imports() {
  "$py" -c 'from tf2_msgs.msg import TFMessage
TFMessage.__class__.__import_type_support__()
assert TFMessage._TYPE_SUPPORT is not None' >/dev/null 2>&1
}

if [ "$force" = 0 ] && imports; then
  if [ ! -f "$stamp" ]; then
    echo "build_tf2_msgs: tf2_msgs is already importable (not built by this script): nothing to do"
    exit 0
  fi
  if [ "$(cat "$stamp")" = "$source_hash" ]; then
    echo "build_tf2_msgs: tf2_msgs is up to date in $venv"
    exit 0
  fi
fi

if [ -n "${ROS_DISTRO:-}" ] && [ ! -f "$stamp" ]; then
  echo "build_tf2_msgs: ROS_DISTRO=$ROS_DISTRO is sourced but tf2_msgs does not import;" \
       "install it from that distribution (apt-get install ros-$ROS_DISTRO-tf2-msgs)" >&2
  exit 1
fi

for tool in cmake ninja; do
  [ -x "$venv/bin/$tool" ] || { echo "build_tf2_msgs: no $venv/bin/$tool; pip install -r requirements-ros.txt first" >&2; exit 1; }
done
[ -f "$venv/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ] || {
  echo "build_tf2_msgs: rosidl_default_generators is not in $venv; pip install -r requirements-ros.txt first" >&2; exit 1; }

build=$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
log=$build/build.log
start=$SECONDS
echo "build_tf2_msgs: building tf2_msgs into $venv (log: $log)"
# The venv's bin first: cmake and ninja from PyPI, and the venv's python for the generators.
if ! (
  export PATH="$venv/bin:$PATH"
  unset CMAKE_PREFIX_PATH AMENT_PREFIX_PATH
  cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DCMAKE_PREFIX_PATH="$venv" \
    -DPython3_EXECUTABLE="$py" \
    -DBUILD_TESTING=OFF
  cmake --build "$build" --parallel "$(nproc)"
  cmake --install "$build"
) >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "build_tf2_msgs: build failed (output above)" >&2
  trap - EXIT
  exit 1
fi
echo "$source_hash" >"$stamp"
imports || { echo "build_tf2_msgs: built, but tf2_msgs still does not import in $venv" >&2; exit 1; }
echo "build_tf2_msgs: tf2_msgs installed in $((SECONDS - start)) s"
