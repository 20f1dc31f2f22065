# The two commands of the README: `make run` (main job) and `make test` (colcon test).
# Each sets up .venv first (idempotent: redone only when a requirements file changes).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.l2l-setup
# DDS discovery stays on loopback, in a domain of our own.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
# MuJoCo renders offscreen through EGL (Mesa's software rasteriser without a GPU).
export MUJOCO_GL ?= egl
TASKS ?= 5
# The I-maze task family `make run` draws its tasks from (fixed: the bundled model's one maze).
FAMILY ?= fixed
# The spiking model it runs: the bundled one on the default maze, the one fine-tuned on the
# Sim2Real family for any other family ('' : the graph's default, models/imaze_lsnn).
CHECKPOINT ?= $(if $(filter fixed,$(FAMILY)),,models/imaze_lsnn_sim2real/policy.json)

.PHONY: setup run test build train-imaze clean

setup: $(STAMP) $(VENV)/bin/l2l

# `l2l` on the venv's PATH (`source .venv/bin/activate`), run from this source tree.
$(VENV)/bin/l2l: $(STAMP)
	printf '%s\n' '#!/bin/sh' '# l2l from $(CURDIR) (written by make setup)' \
	  'PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" exec "$(CURDIR)/$(PY)" -m l2l_ros.cli "$$@"' > $@
	chmod +x $@

$(STAMP): requirements.txt requirements-ros.txt tools/build_tf2_msgs.sh $(wildcard msgs/tf2_msgs/*.xml msgs/tf2_msgs/*.txt msgs/tf2_msgs/msg/*.msg)
	@if [ -n "$$ROS_DISTRO" ]; then \
	  echo "ROS_DISTRO=$$ROS_DISTRO is sourced: using its rclpy, not installing ROS wheels from PyPI"; \
	  test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@if [ -z "$$ROS_DISTRO" ]; then \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r requirements-ros.txt; fi
	# tf2_msgs (for /tf): no PyPI wheel, so built here with the rosidl generators (a sourced ROS has it).
	bash tools/build_tf2_msgs.sh $(VENV)
	# Offscreen rendering (l2l eval --video) needs EGL and Mesa's drivers (software rendering without a GPU).
	@ldconfig -p 2>/dev/null | grep -q libEGL_mesa || { \
	  echo "installing Debian's libegl-mesa0 and libgl1-mesa-dri for offscreen rendering"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && apt-get install -y -q libegl-mesa0 libgl1-mesa-dri || true; \
	  else echo "  not root: sudo apt-get install libegl-mesa0 libgl1-mesa-dri"; fi; }
	touch $(VENV)/COLCON_IGNORE $@

run: setup
	$(PY) -m l2l_ros.cli run navigation --tasks $(TASKS) --set family=$(FAMILY) \
	  $(if $(CHECKPOINT),--set checkpoint=$(CHECKPOINT)) --out out/run

build: setup
	source $(VENV)/bin/activate && colcon build --paths . --event-handlers console_cohesion+

test: build
	rm -rf build/l2l_ros/pytest.xml log/latest_test
	source $(VENV)/bin/activate && \
	  colcon test --paths . --event-handlers console_direct+ --return-code-on-test-failure \
	    --pytest-args -p no:cacheprovider -ra && \
	  colcon test-result --verbose | tee log/test-result.txt && \
	  awk '/^Summary:/ { n = $$2 } END { if (n + 0 == 0) { print "no test ran"; exit 1 } }' log/test-result.txt

# The bundled spiking I-maze model's whole chain, teacher included (about an hour on 2 cores),
# into runs/ (resumes after a kill); it never writes over the bundled models/.
train-imaze: setup
	$(PY) -m l2l_ros.cli train --recipe imaze_lsnn --out runs/imaze_lsnn

clean:
	rm -rf build install log out
