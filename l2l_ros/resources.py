"""Find the package's data files (``urdf/``, ``sim/``, ``config/``, ``models/``...).

Two layouts are supported:

* the source tree: the repository root is the parent of the ``l2l_ros`` package
  directory, so ``share_path("urdf", "arm.urdf")`` is ``<repo>/urdf/arm.urdf``;
* an installed ament layout: ``<prefix>/share/l2l_ros/urdf/arm.urdf``, found with
  ``ament_index_python.get_package_share_directory("l2l_ros")`` when that module is
  importable and the package is registered in the ament index.

The source tree wins when it has the file (an editable checkout should use its own
files); otherwise the installed share directory is used; if neither has it, the
source-tree path is returned (callers get a clear "file not found" on open).
"""
from __future__ import annotations

import functools
import pathlib

PACKAGE = "l2l_ros"
SOURCE_ROOT = pathlib.Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def installed_share_dir() -> pathlib.Path | None:
    """``<prefix>/share/l2l_ros`` from the ament index, or None when unavailable."""
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
    except Exception:  # ament_index_python not installed
        return None
    try:
        return pathlib.Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, LookupError, ValueError, KeyError, OSError):
        return None


def share_path(*parts: str) -> pathlib.Path:
    """Path of a data file or directory shipped with the package."""
    src = SOURCE_ROOT.joinpath(*parts)
    if src.exists():
        return src
    share = installed_share_dir()
    if share is not None:
        inst = share.joinpath(*parts)
        if inst.exists():
            return inst
    return src
