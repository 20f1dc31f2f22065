"""The trainer under SIGKILL (``l2l bench reliability``, issue 32): killed at random
moments, half of them aimed at its checkpoint writes, every checkpoint still loads, at
most one checkpoint interval of updates is lost, and the resumed run ends bit-identical
to one never interrupted.

The run is a small bandit training (2 arms, 10 pulls, 8 tasks per update: what ``l2l
train bandit --arms 2 --horizons 10 --num-envs 8`` trains, with a checkpoint every
``checkpoint_every`` updates, which ``l2l train`` does not expose), run as its own
process by ``python -m l2l_ros.meta.kill_test train OUT ...`` so it can be killed.

How a kill is placed: the uninterrupted reference run gives the startup time and the
time per update. Kill moments are drawn uniformly over the reference run's timeline
and sorted; each becomes the update the run is to be at when killed. A *random* kill
sleeps until then (from the resumed update) plus a uniform part of an update, or, for a
moment inside the startup, that long after the start (the resume and its repairs). A
*targeted* kill polls the run folder every ~1 ms from a little before then and kills at
once on one write event, in turn: a trainer-state temporary, a policy-weights
temporary, the weights' replace (before the JSON is written), a policy-JSON temporary
(any write event once the chosen one was missed for three checkpoint intervals).
Targeted kills wait for a write, so the run gets ahead of the moments; once it is past
70% of its updates the run folder is wiped and the run starts over (``fresh_start``),
so every kill lands in a running trainer.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["trainer_kills", "worker_command", "TRAIN_ARGS"]

TRAIN_ARGS = {"family": "bandit", "policy": "lsnn", "arms": 2, "horizons": "10", "num_envs": 8}
UPDATES = 120          # ~15 s uninterrupted on one core
CHECKPOINT_EVERY = 4
POLL_S = 0.001
EVENTS = ("trainer_state_tmp", "policy_weights_tmp", "policy_weights_replaced", "policy_json_tmp")
_TEMPORARY_PREFIXES = {".trainer_state.safetensors.": "trainer_state_tmp",
                       ".policy.safetensors.": "policy_weights_tmp", ".policy.json.": "policy_json_tmp"}


def worker_command(out: Path, updates: int, seed: int, checkpoint_every: int) -> list[str]:
    """The training process: the same line for the reference run and every restart."""
    return [sys.executable, "-m", "l2l_ros.meta.kill_test", "train", str(out), "--updates", str(updates),
            "--seed", str(seed), "--checkpoint-every", str(checkpoint_every)]


def _train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m l2l_ros.meta.kill_test")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("train", help="the small bandit training that trainer_kills kills")
    p.add_argument("out")
    p.add_argument("--updates", type=int, default=UPDATES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY)
    args = parser.parse_args(argv)
    import torch

    from l2l_ros.families import train_config
    from l2l_ros.meta.train import train

    torch.set_num_threads(1)  # as l2l train (--threads 1): bit-identical runs
    a = TRAIN_ARGS
    cfg = train_config(a["family"], a["policy"], args.updates, a["num_envs"], args.seed, arms=a["arms"],
                       horizons=a["horizons"], checkpoint_every=args.checkpoint_every)
    command = (f"l2l train bandit --arms {a['arms']} --horizons {a['horizons']} --num-envs {a['num_envs']} "
               f"--updates {args.updates} --seed {args.seed} (checkpoint_every {args.checkpoint_every})")
    train(cfg, Path(args.out), command=command)
    return 0


# ----------------------------------------------------------------------------- the folder
def _temporaries(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp"))
    except OSError:
        return []


def _weights_id(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder / "policy.safetensors")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _events(folder: Path, weights_before: tuple[int, int] | None, old: set[str]) -> set[str]:
    """The write events under way in ``folder`` (temporaries not in ``old``: an earlier
    kill's, which the trainer removes at its start)."""
    found = set()
    for name in set(_temporaries(folder)) - old:
        for prefix, event in _TEMPORARY_PREFIXES.items():
            if name.startswith(prefix):
                found.add(event)
    now = _weights_id(folder)
    if now is not None and now != weights_before:
        found.add("policy_weights_replaced")
    return found


def _trainer_state_update(folder: Path) -> int | None:
    """The update of the trainer state (None: no state yet); raises when it does not read."""
    path = folder / "trainer_state.safetensors"
    if not path.exists():
        return None
    from safetensors import safe_open
    from safetensors.torch import load as st_load

    st_load(path.read_bytes())  # every tensor parses
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "l2l_ros-trainer-1":
        raise ValueError(f"{path} is no trainer state")
    return int(meta["update"])


def _last_logged_update(folder: Path) -> int:
    path = folder / "train_log.jsonl"
    last = 0
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                last = max(last, int(json.loads(line)["update"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the kill
    return last


def _log_rows(folder: Path) -> list[dict]:
    """The train log without its timings (which differ between runs)."""
    rows = []
    for line in (folder / "train_log.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key in ("update_seconds", "wall_seconds", "checkpoint"):
            row.pop(key, None)
        rows.append(row)
    return rows


def _check_folder(folder: Path) -> dict:
    """After a kill: every checkpoint there loads; the updates they hold."""
    from l2l_ros.meta.checkpoint import CheckpointError, load_checkpoint

    out: dict[str, Any] = {"loaded": True, "errors": []}
    try:
        out["trainer_state_update"] = _trainer_state_update(folder)
    except Exception as e:  # noqa: BLE001 - any failure to read is the finding
        out["loaded"] = False
        out["errors"].append(f"trainer state: {type(e).__name__}: {e}")
        out["trainer_state_update"] = None
    out["policy_update"] = None
    if (folder / "policy.safetensors").exists() or (folder / "policy.json").exists():
        try:
            _, doc = load_checkpoint(folder / "policy.json")
            out["policy_update"] = (doc.get("evaluation") or {}).get("updates")
            out["json_stale"] = bool(doc.get("json_stale"))
        except CheckpointError as e:
            out["loaded"] = False
            out["errors"].append(str(e))
    return out


# ----------------------------------------------------------------------------- processes
def _start(cmd: list[str], env: dict, log: Path):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the trainer and anything it started
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_done(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None


def _sleep_unless_exited(proc: subprocess.Popen, seconds: float) -> bool:
    """Sleep ``seconds``; False when the process ended first."""
    try:
        proc.wait(timeout=max(0.0, seconds))
        return False
    except subprocess.TimeoutExpired:
        return True


def _targeted_kill(proc: subprocess.Popen, folder: Path, event: str, not_before: float, give_up_after: float,
                   deadline: float, old: set[str]) -> dict:
    """Poll ``folder`` and SIGKILL ``proc`` on ``event`` (any write event after ``give_up_after``
    seconds of polling); the event it was killed on, or None when the process ended first."""
    if not _sleep_unless_exited(proc, not_before):
        return {"event": None}
    weights_before = _weights_id(folder)
    started = time.monotonic()
    while time.monotonic() < deadline:
        seen = _events(folder, weights_before, old)
        want = seen if time.monotonic() - started > give_up_after else seen & {event}
        if want:
            _kill(proc)
            return {"event": sorted(want)[0], "wanted": event}
        if proc.poll() is not None:
            return {"event": None}
        time.sleep(POLL_S)
    _kill(proc)
    return {"event": "deadline"}


def _reference(out: Path, cmd: list[str], env: dict, log: Path, timeout: float) -> dict:
    t0 = time.monotonic()
    proc = _start(cmd, env, log)
    rc = _wait_done(proc, timeout)
    wall = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"the reference training failed (exit {rc}); see {log}")
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    training = float(rows[-1]["wall_seconds"])
    return {"wall_seconds": wall, "startup_seconds": max(0.2, wall - training),
            "update_seconds": training / max(1, len(rows))}


# ----------------------------------------------------------------------------- the test
def trainer_kills(kills: int, seed: int, log_dir: Path, updates: int = UPDATES,
                  checkpoint_every: int = CHECKPOINT_EVERY, max_seconds: float = 900.0) -> dict:
    """SIGKILL the trainer ``kills`` times (half at random moments, half at its checkpoint
    writes), restarting it after each, and check every checkpoint, the updates lost and
    the end result against an uninterrupted run. Folders: ``log_dir/reference``,
    ``log_dir/killed``, ``log_dir/logs``. Returns the figures and ``passed``."""
    from l2l_ros.meta.checkpoint import load_checkpoint
    from l2l_ros.runner import ros_environment

    t_start = time.monotonic()
    deadline = t_start + max_seconds
    log_dir = Path(log_dir)
    ref_dir, run_dir, logs = log_dir / "reference", log_dir / "killed", log_dir / "logs"
    for folder in (ref_dir, run_dir, logs):
        shutil.rmtree(folder, ignore_errors=True)  # a rerun starts afresh, not from the last one's folders
    env = ros_environment()
    rng = random.Random(seed)
    train_seed = seed
    ref = _reference(ref_dir, worker_command(ref_dir, updates, train_seed, checkpoint_every), env,
                     logs / "reference.log", timeout=min(300.0, max_seconds))
    startup, per_update = ref["startup_seconds"], ref["update_seconds"]
    run_s = startup + updates * per_update
    attempt_timeout = 3 * run_s + 60.0

    # Within the first 70% of the reference's time: a run faster than the reference (a
    # machine less loaded than when it ran) must not end before its kill.
    moments = sorted(rng.uniform(0.0, 0.7 * run_s) for _ in range(kills))
    targeted = set(rng.sample(range(kills), kills // 2))
    cmd = worker_command(run_dir, updates, train_seed, checkpoint_every)
    records: list[dict] = []
    problems: list[str] = []
    n_targeted = 0
    for i, moment in enumerate(moments):
        if time.monotonic() > deadline:
            problems.append(f"out of time after {i} kills")
            break
        state = _check_folder(run_dir)
        resumed_at = state["trainer_state_update"] or 0
        fresh_start = resumed_at >= 0.7 * updates  # past every kill moment (targeted kills wait for a write)
        if fresh_start:  # start the run over, so that every kill still lands in a running trainer
            shutil.rmtree(run_dir)
            resumed_at = 0
        at_update = (moment - startup) / per_update  # < 0: a moment of the startup
        ahead = max(0.0, at_update - resumed_at)
        if at_update < 0:
            delay = moment
        elif at_update < resumed_at:  # the kills before went past this moment: early in this run
            delay = startup + rng.uniform(0.0, checkpoint_every * per_update)
        else:
            delay = startup + ahead * per_update
        record: dict[str, Any] = {"kill": i + 1, "resumed_at": resumed_at, "targeted": i in targeted,
                                  "fresh_start": fresh_start}
        old = set(_temporaries(run_dir))
        proc = _start(cmd, env, logs / f"run_{i + 1:02d}.log")
        t_run = time.monotonic()
        if i in targeted:
            n_targeted += 1
            event = EVENTS[(n_targeted - 1) % len(EVENTS)]
            not_before = max(0.0, delay - checkpoint_every * per_update) if at_update >= 0 else 0.0
            hit = _targeted_kill(proc, run_dir, event, not_before, give_up_after=3 * checkpoint_every * per_update
                                 + startup, deadline=min(deadline, t_run + attempt_timeout), old=old)
            record.update(hit)
            delivered = hit["event"] not in (None, "deadline")
        else:
            delivered = _sleep_unless_exited(proc, min(delay, attempt_timeout))
            if delivered:
                _kill(proc)
        record["seconds_after_start"] = round(time.monotonic() - t_run, 3)
        record["delivered"] = delivered
        if not delivered:
            if proc.poll() is None:
                _kill(proc)
            problems.append(f"kill {i + 1} not delivered: the run ended first (exit {proc.returncode})")
        leftovers = sorted(set(_temporaries(run_dir)) - old)
        record["temporaries_left"] = leftovers
        record["during_write"] = bool(leftovers)  # the kill interrupted an atomic write
        last_logged = _last_logged_update(run_dir)
        after = _check_folder(run_dir)
        record.update(last_logged=last_logged, trainer_state_update=after["trainer_state_update"],
                      policy_update=after["policy_update"], json_stale=after.get("json_stale", False),
                      loaded=after["loaded"])
        kept = after["trainer_state_update"] or 0
        record["updates_lost"] = last_logged - kept
        if not after["loaded"]:
            problems.append(f"kill {i + 1}: a checkpoint does not load: {after['errors']}")
        if record["updates_lost"] > checkpoint_every:
            problems.append(f"kill {i + 1}: {record['updates_lost']} updates lost (logged {last_logged}, "
                            f"trainer state {kept})")
        if after["policy_update"] is not None and after["policy_update"] < last_logged - checkpoint_every:
            problems.append(f"kill {i + 1}: the policy checkpoint holds update {after['policy_update']}, "
                            f"{last_logged} were logged")
        records.append(record)

    # Run to completion after the last kill.
    final = _start(cmd, env, logs / "run_final.log")
    rc = _wait_done(final, max(10.0, min(attempt_timeout, deadline - time.monotonic() + 60.0)))
    if rc != 0:
        problems.append(f"the resumed run did not finish (exit {rc})")
    bit_identical, log_identical = False, False
    try:
        a, doc_a = load_checkpoint(ref_dir)
        b, doc_b = load_checkpoint(run_dir)
        sa, sb = a.state_dict(), b.state_dict()
        bit_identical = sa.keys() == sb.keys() and all(torch_equal(sa[k], sb[k]) for k in sa)
        log_identical = _log_rows(ref_dir) == _log_rows(run_dir)
        if doc_b.get("json_stale") or (doc_b.get("evaluation") or {}).get("updates") != updates:
            problems.append(f"the finished run's checkpoint is stale or not at update {updates}")
    except Exception as e:  # noqa: BLE001 - reported, not raised
        problems.append(f"cannot compare with the reference: {type(e).__name__}: {e}")
    if not bit_identical:
        problems.append("the resumed run's weights differ from the uninterrupted run's")
    leftover = _temporaries(run_dir)
    if leftover:
        problems.append(f"temporaries left: {leftover}")
    all_loaded = all(r["loaded"] for r in records)
    result = {
        "kills": len(records),
        "kills_delivered": sum(r["delivered"] for r in records),
        "targeted_kills": sum(r["targeted"] for r in records),
        "kills_during_writes": sum(r["during_write"] for r in records),
        "kills_leaving_a_stale_json": sum(bool(r["json_stale"]) for r in records),
        "all_checkpoints_loaded": all_loaded,
        "max_updates_lost": max((r["updates_lost"] for r in records), default=0),
        "checkpoint_every": checkpoint_every,
        "updates": updates,
        "bit_identical": bit_identical,
        "log_identical": log_identical,
        "leftover_temporaries": leftover,
        "reference_seconds": round(ref["wall_seconds"], 2),
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "records": records,
        "problems": problems,
    }
    result["passed"] = (not problems and result["kills"] == kills and result["kills_delivered"] == kills
                        and all_loaded and result["max_updates_lost"] <= checkpoint_every and bit_identical)
    (log_dir / "trainer_kills.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


if __name__ == "__main__":
    sys.exit(_train_main(sys.argv[1:]))
