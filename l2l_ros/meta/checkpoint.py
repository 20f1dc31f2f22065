"""Policy checkpoints: ``<stem>.safetensors`` (weights only) + ``<stem>.json`` (metadata).

Loading never unpickles: weights are read with ``safetensors.torch.load`` and the
policy is rebuilt from the JSON description. Every problem raises
:class:`CheckpointError` (a ``ValueError``) naming the file and what is wrong, so a
running node can refuse a bad file and keep its current weights.

JSON keys (``FORMAT_VERSION`` 1): ``format_version``, ``policy_kind``,
``policy_config``, ``obs_dim``, ``action_space``, ``env_id``, ``task_family``,
``env_kwargs``, ``command``, ``git_commit`` (and, from the trainer, ``git_modified``:
the package's tracked files differed from that commit), ``seed``, ``evaluation``, ``created``,
``weights_file``, ``weights_sha256``, ``tensors`` (name -> shape), plus any other
metadata the caller passes. Files are written to a temporary name and moved into
place with ``os.replace`` (weights first, then JSON).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from l2l_ros.meta.policies import POLICY_KINDS, RecurrentPolicy, build_policy

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "checkpoint_paths",
           "git_commit", "git_source_modified", "atomic_write_bytes", "FORMAT_VERSION"]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "policy_kind", "policy_config", "obs_dim", "action_space")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or inconsistent."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, json)`` paths for a stem, a directory (``dir/policy``), or either file."""
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        p = p / "policy"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


_PACKAGE = Path(__file__).resolve().parents[1]  # l2l_ros: the code a checkpoint was trained with


def _git(*args: str, cwd: str | os.PathLike | None) -> str | None:
    """Stdout of ``git ARGS`` in ``cwd`` (default: the package), or None without git."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd or _PACKAGE, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the source tree, or None."""
    out = _git("rev-parse", "HEAD", cwd=cwd)
    return out.strip() or None if out is not None else None


def git_source_modified(cwd: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files under ``cwd`` (default: the package) differ from
    ``git_commit`` (None: no git).

    Why: a checkpoint names the commit that trained it; a run started with uncommitted
    changes would otherwise claim code it did not run."""
    out = _git("status", "--porcelain", "--untracked-files=no", "--", ".", cwd=cwd)
    return bool(out.strip()) if out is not None else None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _jsonable(obj: Any) -> Any:
    """Make numpy scalars/arrays and paths JSON-serializable."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_checkpoint(path_stem_or_dir: str | os.PathLike, policy: RecurrentPolicy,
                    metadata: dict | None = None) -> tuple[Path, Path]:
    """Write weights + metadata; returns ``(weights_path, json_path)``.

    ``metadata`` may hold ``env_id``, ``task_family``, ``env_kwargs``, ``command``,
    ``seed``, ``evaluation`` (a dict of figures) and anything else JSON-able. The
    policy description, tensor shapes, weight hash and git commit are added here.
    """
    weights_path, json_path = checkpoint_paths(path_stem_or_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"refusing to save {weights_path}: tensor {name!r} has non-finite values")
    blob = st_save(tensors, metadata={"format": "pt", "l2l_ros_format_version": str(FORMAT_VERSION)})
    desc = policy.describe()
    metadata = dict(metadata or {})
    env_id = metadata.get("env_id")
    doc = {
        "format_version": FORMAT_VERSION,
        "env_id": env_id,
        "task_family": metadata.get("task_family", _family_of(env_id)),
        "env_kwargs": metadata.get("env_kwargs", {}),
        "command": metadata.get("command"),
        "git_commit": metadata.get("git_commit") or git_commit(),
        "seed": metadata.get("seed"),
        "evaluation": metadata.get("evaluation", {}),
        "created": metadata.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    }
    for k, v in metadata.items():
        doc.setdefault(k, v)
    doc.update({
        "policy_kind": desc["kind"],
        "policy_config": desc["config"],
        "obs_dim": desc["obs_dim"],
        "action_space": desc["action_space"],
        "weights_file": weights_path.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
    })
    text = json.dumps(_jsonable(doc), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(weights_path, blob)
    atomic_write_bytes(json_path, (text + "\n").encode())
    return weights_path, json_path


def _family_of(env_id: str | None) -> str | None:
    if not env_id:
        return None
    name = env_id.split("/")[-1].split("-")[0]
    return name.lower()


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON document of a checkpoint, validated (no weights read)."""
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"checkpoint metadata {json_path} is missing")
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read checkpoint metadata {json_path}: {e}") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint metadata {json_path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"checkpoint metadata {json_path} must be a JSON object, "
                              f"got {type(doc).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise CheckpointError(f"checkpoint metadata {json_path} lacks required keys {missing}")
    if not isinstance(doc["format_version"], int) or doc["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint metadata {json_path} has format_version "
                              f"{doc['format_version']!r}; this code reads up to {FORMAT_VERSION}")
    if doc["policy_kind"] not in POLICY_KINDS:
        raise CheckpointError(f"checkpoint metadata {json_path}: unknown policy_kind "
                              f"{doc['policy_kind']!r} (expected one of {POLICY_KINDS})")
    return doc


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[RecurrentPolicy, dict]:
    """Rebuild the policy from ``<stem>.json`` and fill it from ``<stem>.safetensors``.

    ``path`` may be either file, the stem, or a directory holding ``policy.*``.
    Returns ``(policy in eval mode, metadata dict)``.
    """
    weights_path, json_path = checkpoint_paths(path)
    doc = read_metadata(path)
    try:
        policy = build_policy(doc["policy_kind"], int(doc["obs_dim"]), doc["action_space"],
                              doc["policy_config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint metadata {json_path} describes no valid policy: {e}") from e

    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} are missing")
    try:
        blob = weights_path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint weights {weights_path}: {e}") from e
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"checkpoint weights {weights_path} are corrupt or truncated "
                              f"({type(e).__name__}: {e})") from e

    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights {weights_path} do not fit the policy described in "
                              f"{json_path.name}: missing tensors {missing}, unexpected {unexpected}")
    for name, ref in expected.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(f"checkpoint weights {weights_path}: tensor {name!r} has shape "
                                  f"{tuple(t.shape)} but the metadata in {json_path.name} implies "
                                  f"{tuple(ref.shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint weights {weights_path}: tensor {name!r} has "
                                  f"non-finite values (NaN/inf)")
        tensors[name] = t.to(ref.dtype)
    expected_hash = doc.get("weights_sha256")
    if expected_hash and hashlib.sha256(blob).hexdigest() != expected_hash:
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 recorded in "
                              f"{json_path.name} (modified, or the two files come from different saves)")
    policy.load_state_dict(tensors, strict=True)
    policy.to(map_location)
    policy.eval()
    return policy, doc
