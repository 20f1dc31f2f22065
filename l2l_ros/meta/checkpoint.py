"""Policy checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (metadata).

Loading never unpickles: weights are read with ``safetensors.torch.load`` and the
policy is rebuilt from the JSON description, every field of which is type- and
range-checked first. Every problem raises :class:`CheckpointError` (a
``ValueError``) in one line naming the file and what is wrong, so a running node can
refuse a bad file and keep its current weights.

JSON keys: ``format_version``, ``policy_kind``, ``policy_config``, ``obs_dim``,
``action_space``, ``env_id``, ``task_family``, ``env_kwargs``, ``command``,
``git_commit`` (and, from the trainer, ``git_modified``: the package's tracked files
differed from that commit), ``seed``, ``evaluation``, ``created``, ``weights_file``,
``weights_sha256``, ``tensors`` (name -> shape), plus any other metadata the caller
passes.

Format 2 (``FORMAT_VERSION``): the safetensors header metadata holds the whole JSON
document but ``weights_sha256`` (key ``l2l_ros_metadata``), and ``weights_sha256`` is
the sha256 of the whole safetensors file, so the hash covers every JSON field and the
weights file alone is the checkpoint. The embedded copy also holds ``data_sha256``, the
sha256 of the tensor data (the bytes after the header), so the weights file checks
itself. Saving replaces the weights file (the commit: one ``os.replace``), then writes
the JSON as a readable copy.

Which document :func:`load_checkpoint` uses:

* the JSON carries the weights' hash: the JSON, which must equal the embedded copy
  field by field (else it was edited: refused);
* the JSON carries another hash, or is missing, and the weights embed a copy: the
  weights are the committed truth (a save killed between its two files, so every
  checkpoint loads after a kill): the embedded copy, checked like a JSON one, with
  ``"json_stale": True`` in the returned metadata; :func:`repair_checkpoint` rewrites
  the JSON from it.

Format 1 (weights without the embedded copy, the bundled models) is read with the same
field checks, and a hash mismatch is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from l2l_ros.meta.policies import (MAX_UNITS, POLICY_KINDS, RecurrentPolicy, build_policy, check_bool,
                                   check_int, config_from_dict, normalize_action_spec)

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_metadata", "repair_checkpoint",
           "rewrite_metadata", "checkpoint_paths", "git_commit", "git_source_modified", "atomic_write_bytes",
           "remove_stale_temporaries", "FORMAT_VERSION", "MAX_JSON_BYTES", "MAX_WEIGHTS_BYTES"]

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
REQUIRED_KEYS = ("format_version", "policy_kind", "policy_config", "obs_dim", "action_space")
MAX_JSON_BYTES = 2**20           # the bundled models' JSON is < 5 kB
MAX_WEIGHTS_BYTES = 256 * 2**20  # MAX_PARAMETERS float32 weights (the bundled models: < 400 kB)
MAX_JSON_DEPTH = 64              # nesting of the JSON document (json.loads recurses)
EMBEDDED_KEY = "l2l_ros_metadata"  # safetensors header metadata key of the format-2 copy
STALE_KEY = "json_stale"  # in load_checkpoint's metadata when it came from the weights, never saved
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # mkstemp's name in atomic_write_bytes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file ``.<name>.XXXXXXXX.tmp`` beside ``path``, fsync, then
    ``os.replace``."""
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


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files that :func:`atomic_write_bytes` leaves when killed before
    its ``os.replace``; returns them. Only for a directory one process writes (the
    trainer's ``out_dir``): another writer's file in flight would go too."""
    removed = []
    folder = Path(directory)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if _TEMPORARY.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


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
    """Write weights + metadata (format 2); returns ``(weights_path, json_path)``.

    ``metadata`` may hold ``env_id``, ``task_family``, ``env_kwargs``, ``command``,
    ``seed``, ``evaluation`` (a dict of figures) and anything else JSON-able. The
    policy description, tensor shapes, weight hash and git commit are added here. A
    kill before the weights' ``os.replace`` leaves the old pair; one after it, new
    weights and a stale JSON: the checkpoint loads from the weights (``json_stale``)
    and :func:`repair_checkpoint` rewrites the JSON.
    """
    weights_path, json_path = checkpoint_paths(path_stem_or_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"refusing to save {weights_path}: tensor {name!r} has non-finite values")
    doc = _document(policy, tensors, weights_path, metadata or {})
    doc["data_sha256"] = hashlib.sha256(_tensor_data(st_save(tensors, metadata={"format": "pt"}))).hexdigest()
    embedded = json.dumps(_jsonable(doc), sort_keys=True, allow_nan=False)
    doc = json.loads(embedded)  # exactly what a reader of the embedded copy gets
    _validate_document(doc, f"refusing to save {json_path}:")
    blob = st_save(tensors, metadata={"format": "pt", "l2l_ros_format_version": str(FORMAT_VERSION),
                                      EMBEDDED_KEY: embedded})
    if hashlib.sha256(_tensor_data(blob)).hexdigest() != doc["data_sha256"]:  # safetensors' layout changed
        raise CheckpointError(f"refusing to save {weights_path}: the tensor data depends on the header")
    atomic_write_bytes(weights_path, blob)  # the commit
    atomic_write_bytes(json_path, _json_copy(doc, blob))
    return weights_path, json_path


def _document(policy: RecurrentPolicy, tensors: dict, weights_path: Path, metadata: dict) -> dict:
    """The JSON document of a save, without ``weights_sha256`` (the hash of a blob that
    embeds this document)."""
    desc = policy.describe()
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
        "format_version": FORMAT_VERSION,
        "policy_kind": desc["kind"],
        "policy_config": desc["config"],
        "obs_dim": desc["obs_dim"],
        "action_space": desc["action_space"],
        "weights_file": weights_path.name,
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
    })
    for key in ("weights_sha256", "data_sha256", STALE_KEY):  # of the blob, and of a load
        doc.pop(key, None)
    return doc


def _tensor_data(blob: bytes) -> bytes:
    """The bytes after a safetensors header (the tensors themselves)."""
    (size,) = struct.unpack("<Q", blob[:8])
    return blob[8 + size:]


def _json_copy(embedded_doc: dict, blob: bytes) -> bytes:
    """The text of ``<stem>.json``: the embedded document plus the blob's hash."""
    doc = {**embedded_doc, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def rewrite_metadata(path: str | os.PathLike, changes: dict) -> tuple[Path, Path]:
    """Change top-level metadata fields (e.g. ``evaluation`` figures measured after
    training) of a loadable checkpoint: the weights are saved again with the new
    embedded copy, so the hash covers the change. Editing the JSON alone makes a
    format-2 checkpoint refuse to load."""
    policy, doc = load_checkpoint(path)
    doc.pop(STALE_KEY, None)
    fixed = {"format_version", "policy_kind", "policy_config", "obs_dim", "action_space", "tensors",
             "weights_file", "weights_sha256", "data_sha256", STALE_KEY}
    refused = sorted(set(changes) & fixed)
    if refused:
        raise CheckpointError(f"rewrite_metadata cannot change {refused} of {checkpoint_paths(path)[1]}")
    return save_checkpoint(path, policy, {**doc, **changes})


def _family_of(env_id: str | None) -> str | None:
    if not env_id:
        return None
    name = env_id.split("/")[-1].split("-")[0]
    return name.lower()


# --------------------------------------------------------------------------- reading
def _read_capped(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused unread when larger than ``limit`` (checked with
    ``stat`` first, and again while reading: the file may grow in between)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {what} {path} is missing")
    try:
        size = path.stat().st_size
        if size > limit:
            raise CheckpointError(f"checkpoint {what} {path} is {size} bytes, more than the {limit} allowed")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {what} {path}: {e}") from e
    if len(data) > limit:
        raise CheckpointError(f"checkpoint {what} {path} grew past the {limit} bytes allowed while read")
    return data


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(data: bytes | str, where: str) -> Any:
    """``json.loads`` that raises CheckpointError for bad text, NaN/Infinity, integers
    of more than 4300 digits and nesting deeper than ``MAX_JSON_DEPTH``."""
    try:
        doc = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise CheckpointError(f"{where} is nested too deeply to read") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where} is not valid JSON: {e}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where} is not valid JSON: {e}") from e
    if _depth(doc) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _optional(doc: dict, key: str, kind: type, what: str) -> None:
    """``doc[key]`` is absent, null or a ``kind`` (a bool is no integer here)."""
    value = doc.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ValueError(f"{key} must be {what} or null, got {type(value).__name__}")


def _check_fields(doc: dict) -> None:
    """Type and range of every field this package reads (ValueError naming the field);
    the policy config is checked by building its dataclass, no tensors yet."""
    version = doc["format_version"]
    if isinstance(version, bool) or version not in READABLE_FORMATS:
        raise ValueError(f"format_version is {version!r}; this code reads {list(READABLE_FORMATS)}")
    if not isinstance(doc["policy_kind"], str) or doc["policy_kind"] not in POLICY_KINDS:
        raise ValueError(f"unknown policy_kind {str(doc['policy_kind'])[:40]!r} (expected one of {POLICY_KINDS})")
    check_int("obs_dim", doc["obs_dim"], 1, MAX_UNITS)
    normalize_action_spec(doc["action_space"])
    if not isinstance(doc["policy_config"], dict):
        raise ValueError(f"policy_config must be an object, got {type(doc['policy_config']).__name__}")
    try:
        config_from_dict(doc["policy_kind"], doc["policy_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"policy_config: {e}") from None
    for key in ("env_id", "task_family", "command", "git_commit", "created", "weights_file"):
        _optional(doc, key, str, "a string")
    for key in ("env_kwargs", "evaluation", "train_config"):
        _optional(doc, key, dict, "an object")
    _optional(doc, "seed", int, "an integer")
    if "git_modified" in doc and doc["git_modified"] is not None:
        check_bool("git_modified", doc["git_modified"])
    for key in ("weights_sha256", "init_sha256", "data_sha256"):
        value = doc.get(key)
        if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise ValueError(f"{key} must be 64 lowercase hex digits")
    _check_tensors(doc.get("tensors"))


def _check_tensors(tensors: Any) -> None:
    if tensors is None:
        return
    if not isinstance(tensors, dict):
        raise ValueError("tensors must be an object of name -> shape")
    for name, shape in tensors.items():
        if not isinstance(shape, list) or len(shape) > 8:
            raise ValueError(f"tensors[{name[:40]!r}] must be a list of sizes")
        for size in shape:
            check_int(f"tensors[{name[:40]!r}] size", size, 0, 2**31)


def _validate_document(doc: Any, where: str) -> dict:
    """``doc`` as a checked metadata dict, or CheckpointError ``"<where> <reason>"``."""
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where} must be a JSON object, got {type(doc).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise CheckpointError(f"{where} lacks required keys {missing}")
    try:
        _check_fields(doc)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where} {_one_line(e)}") from None
    return doc


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON document of a checkpoint, every field checked; the weights are not
    read, so for format 2 this does not tell whether the JSON is the weights' copy
    (:func:`load_checkpoint` does)."""
    _, json_path = checkpoint_paths(path)
    data = _read_capped(json_path, MAX_JSON_BYTES, "metadata")
    doc = _parse_json(data, f"checkpoint metadata {json_path}")
    return _validate_document(doc, f"checkpoint metadata {json_path}")


def _embedded_document(blob: bytes, weights_path: Path) -> dict | None:
    """The format-2 copy of the JSON in a safetensors header (None: format 1).
    Raises CheckpointError when the header itself is damaged."""
    where = f"checkpoint weights {weights_path}"
    if len(blob) < 8:
        raise CheckpointError(f"{where} are corrupt or truncated ({len(blob)} bytes)")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise CheckpointError(f"{where} are corrupt or truncated (header of {size} bytes in {len(blob)})")
    header = _parse_json(blob[8:8 + size], f"{where} (header)")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or EMBEDDED_KEY not in meta:
        return None
    if not isinstance(meta[EMBEDDED_KEY], str):
        raise CheckpointError(f"{where} hold a damaged metadata copy")
    return _validate_document(_parse_json(meta[EMBEDDED_KEY], f"{where} (metadata copy)"),
                              f"{where} (metadata copy)")


def _canonical(value: Any) -> str:
    """JSON text that tells ``1`` from ``1.0`` and ``true`` (``==`` does not)."""
    return json.dumps(value, sort_keys=True)


def _check_pair(doc: dict, embedded: dict | None, blob: bytes, weights_path: Path, json_path: Path) -> None:
    """The JSON must be the weights' embedded copy (format 2) and carry their hash."""
    stale = (f"(edited, or an interrupted save: repair_checkpoint('{json_path}') rewrites the JSON "
             f"from the weights)")
    expected_hash = doc.get("weights_sha256")
    if (embedded is not None or expected_hash) and hashlib.sha256(blob).hexdigest() != expected_hash:
        raise CheckpointError(f"checkpoint weights {weights_path} do not match the sha256 recorded in "
                              f"{json_path.name} {stale}")
    if embedded is None and doc["format_version"] >= 2:
        raise CheckpointError(f"checkpoint weights {weights_path} hold no metadata copy, but "
                              f"{json_path.name} says format {doc['format_version']}")
    if embedded is not None:
        differ = sorted(k for k in set(doc) | set(embedded) if k != "weights_sha256"
                        and (k not in doc or k not in embedded or _canonical(doc[k]) != _canonical(embedded[k])))
        if differ:
            raise CheckpointError(f"checkpoint metadata {json_path} differs from the copy in "
                                  f"{weights_path.name} in {differ[:5]} {stale}")


def _committed_document(embedded: dict, blob: bytes, weights_path: Path) -> dict:
    """The metadata of format-2 weights whose JSON is missing or another save's: the
    embedded copy (already checked), once the tensor data matches its ``data_sha256``
    (the whole-file hash in the JSON no longer vouches for it)."""
    expected = embedded.get("data_sha256")
    if expected is not None and hashlib.sha256(_tensor_data(blob)).hexdigest() != expected:
        raise CheckpointError(f"checkpoint weights {weights_path} are corrupt or truncated (their tensor data "
                              f"does not match the data_sha256 of their metadata copy)")
    return {**embedded, "weights_sha256": hashlib.sha256(blob).hexdigest(), STALE_KEY: True}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[RecurrentPolicy, dict]:
    """Rebuild the policy from ``<stem>.json`` and fill it from ``<stem>.safetensors``.

    ``path`` may be either file, the stem, or a directory holding ``policy.*``.
    Returns ``(policy in eval mode, metadata dict)``. Raises CheckpointError and
    nothing else (but KeyboardInterrupt/SystemExit). When the JSON is missing or holds
    another weights hash and the weights embed a copy, the metadata is that copy (with
    the weights' ``weights_sha256``) plus ``"json_stale": True``.
    """
    weights_path, json_path = checkpoint_paths(path)
    doc = read_metadata(path) if json_path.is_file() or not weights_path.is_file() else None
    blob = _read_capped(weights_path, MAX_WEIGHTS_BYTES, "weights")
    embedded = _embedded_document(blob, weights_path)
    if embedded is not None and (doc is None or doc.get("weights_sha256") != hashlib.sha256(blob).hexdigest()):
        doc = _committed_document(embedded, blob, weights_path)  # a save killed before its JSON
    else:
        if doc is None:
            read_metadata(path)  # format 1 without its JSON: raises that it is missing
        _check_pair(doc, embedded, blob, weights_path, json_path)
    try:
        policy = _build_and_fill(doc, blob, weights_path, json_path)
    except CheckpointError:
        raise
    except Exception as e:  # the last line of defence: a node must survive any file
        raise CheckpointError(f"checkpoint {json_path} cannot be loaded ({type(e).__name__}: "
                              f"{_one_line(e)})") from e
    policy.to(map_location)
    policy.eval()
    return policy, doc


def _build_and_fill(doc: dict, blob: bytes, weights_path: Path, json_path: Path) -> RecurrentPolicy:
    try:
        policy = build_policy(doc["policy_kind"], doc["obs_dim"], doc["action_space"], doc["policy_config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint metadata {json_path} describes no valid policy: {_one_line(e)}") from e
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"checkpoint weights {weights_path} are corrupt or truncated "
                              f"({type(e).__name__}: {_one_line(e)})") from e
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint weights {weights_path} do not fit the policy described in "
                              f"{json_path.name}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
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
    policy.load_state_dict(tensors, strict=True)
    return policy


def repair_checkpoint(path: str | os.PathLike) -> bool:
    """Rewrite ``<stem>.json`` from the copy embedded in format-2 weights when it is
    missing or differs (a save killed between its two files, or an edit); True when
    rewritten. Raises CheckpointError when the weights hold no usable copy."""
    weights_path, json_path = checkpoint_paths(path)
    blob = _read_capped(weights_path, MAX_WEIGHTS_BYTES, "weights")
    embedded = _embedded_document(blob, weights_path)
    if embedded is None:
        raise CheckpointError(f"checkpoint weights {weights_path} hold no metadata copy (format 1): "
                              "nothing to repair the JSON from")
    text = _json_copy(embedded, blob)
    try:
        if _canonical(read_metadata(path)) == _canonical(json.loads(text)):
            return False
    except CheckpointError:
        pass
    atomic_write_bytes(json_path, text)
    return True
