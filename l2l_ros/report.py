"""Per-trial tables, summaries and trajectory pictures for I-maze runs (offline or through ROS)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np


# A later trial that the task's step budget cut off before it had this many times the
# oracle's shortest path never had a fair chance: it is "cut", not failed.
CUT_TRIAL_PATH_MULTIPLE = 2.0


def is_cut_trial(r: dict) -> bool:
    """A later trial without the goal, ended by the task budget within
    ``CUT_TRIAL_PATH_MULTIPLE`` x the centreline route (every task's last trial is cut
    somewhere, so counting it as failed would cap the success rate well below 100%)."""
    limit = CUT_TRIAL_PATH_MULTIPLE * r.get("route_steps", r.get("oracle_path_steps", math.inf))
    return r["trial"] > 0 and not r["success"] and r["steps"] < limit


def summarize(records: Iterable[dict]) -> dict:
    """Success rate and mean steps of first vs later trials (successful trials only for steps).

    ``success_rate`` counts every trial; ``success_rate_uncut`` leaves out cut trials
    (:func:`is_cut_trial`), so a policy that is perfect within the budget scores 100%.
    """
    recs = list(records)
    first = [r for r in recs if r["trial"] == 0]
    later = [r for r in recs if r["trial"] > 0]

    def steps_mean_sem(rs) -> tuple[float, float]:
        ok = [r["steps"] for r in rs if r["success"]]
        mean = float(np.mean(ok)) if ok else math.nan
        return mean, float(np.std(ok, ddof=1) / math.sqrt(len(ok))) if len(ok) > 1 else math.nan

    tasks = {r["task"] for r in recs}
    uncut = [r for r in recs if not is_cut_trial(r)]
    trial1, trial1_sem = steps_mean_sem(first)
    later_mean, later_sem = steps_mean_sem(later)
    goals = per_goal(recs) if any("goal" in r for r in recs) else None
    worst = [g["later_vs_oracle"] for g in (goals or {}).values() if g.get("later_vs_oracle") is not None]
    return _nan_to_none({
        "tasks": len(tasks),
        "trials": len(recs),
        "success_rate": float(np.mean([r["success"] for r in recs])) if recs else math.nan,
        "success_rate_uncut": float(np.mean([r["success"] for r in uncut])) if uncut else math.nan,
        "cut_trials": len(recs) - len(uncut),
        "goals_per_task": sum(r["success"] for r in recs) / max(1, len(tasks)),
        "trial1_mean_steps": trial1,
        "trial1_sem": trial1_sem,
        "later_mean_steps": later_mean,
        "later_sem": later_sem,
        **versus_oracle(first, later),
        **({"later_vs_oracle_worst_goal": max(worst)} if worst else {}),
        **({"per_goal": goals} if goals is not None else {}),
    })


def versus_oracle(first: list[dict], later: list[dict]) -> dict:
    """Steps over the honest oracle (``tasks.imaze_oracle``), successful trials only:
    trial 1 over the search bound, later trials over the trial's own shortest-time bound
    (mean of the per-trial ratios), beside the bounds' means."""
    out: dict = {}
    ok1 = [r for r in first if r["success"] and r.get("oracle_search_steps")]
    if ok1:
        out["oracle_search_steps"] = float(np.mean([r["oracle_search_steps"] for r in first
                                                    if "oracle_search_steps" in r]))
        out["trial1_vs_oracle_search"] = float(np.mean([r["steps"] for r in ok1])) / out["oracle_search_steps"]
    ok = [r for r in later if r["success"] and r.get("oracle_steps")]
    if ok:
        out["oracle_steps"] = float(np.mean([r["oracle_steps"] for r in ok]))
        out["later_vs_oracle"] = float(np.mean([r["steps"] / r["oracle_steps"] for r in ok]))
    return out


def per_goal(records: Iterable[dict]) -> dict:
    """The figures by goal alcove (keys "0".."3").

    The averages hide a search that never visits some alcoves: a policy can score
    well on the alcoves it favours and find nothing in the others.
    """
    by_goal: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        if "goal" in r:
            by_goal[int(r["goal"])].append(r)
    out = {}
    for goal, rs in sorted(by_goal.items()):
        first = [r for r in rs if r["trial"] == 0]
        later = [r["steps"] for r in rs if r["trial"] > 0 and r["success"]]
        tasks = {r["task"] for r in rs}
        out[str(goal)] = _nan_to_none({
            "tasks": len(tasks),
            "goals_per_task": sum(r["success"] for r in rs) / len(tasks),
            "trial1_success": float(np.mean([r["success"] for r in first])) if first else math.nan,
            "later_successes": len(later),
            "later_mean_steps": float(np.mean(later)) if later else math.nan,
            **{k: v for k, v in versus_oracle(first, [r for r in rs if r["trial"] > 0]).items()
               if k in ("later_vs_oracle", "trial1_vs_oracle_search")},
        })
    return out


def _nan_to_none(d: dict) -> dict:
    """JSON has no NaN: a figure that does not exist (no successful trial) is null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def trial_table(records: Iterable[dict]) -> str:
    lines = [f"{'task':>4} {'goal':>4} {'trial':>5} {'steps':>6} {'oracle':>6} {'ratio':>6}  result"]
    for r in records:
        bound = r.get("oracle_steps")
        ratio = f"{r['steps'] / bound:.2f}" if bound and r["success"] else "-"
        lines.append(f"{r['task']:>4} {r.get('goal', '-'):>4} {r['trial'] + 1:>5} {r['steps']:>6} "
                     f"{bound if bound is not None else '-':>6} {ratio:>6}  "
                     f"{'goal reached' if r['success'] else 'budget ran out'}")
    return "\n".join(lines)


def summary_lines(s: dict, label: str) -> str:
    def fmt(x, e=None):  # summarize() gives None for a figure that does not exist
        if x is None:
            return "n/a"
        return f"{x:.1f}" + (f" ± {e:.1f}" if e is not None else "")

    uncut = s.get("success_rate_uncut")
    n_cut = s.get("cut_trials", 0)
    cut = (f" ({100 * uncut:.0f}% without the {n_cut} trial{'' if n_cut == 1 else 's'} the budget cut)"
           if uncut is not None else "")
    line = (f"{label}: {s['tasks']} tasks, {s['trials']} trials, success {100 * s['success_rate']:.0f}%{cut}, "
            f"goals/task {s['goals_per_task']:.2f}; steps to goal: trial 1 {fmt(s['trial1_mean_steps'], s['trial1_sem'])}, "
            f"later trials {fmt(s['later_mean_steps'], s['later_sem'])}")

    def ratio(x):
        return "n/a" if x is None else f"{x:.2f}x"

    if s.get("oracle_steps") is not None or s.get("oracle_search_steps") is not None:
        line += (f"\n    vs the oracle (lower bounds): trial 1 {ratio(s.get('trial1_vs_oracle_search'))} the search "
                 f"bound ({fmt(s.get('oracle_search_steps'))} steps), later trials "
                 f"{ratio(s.get('later_vs_oracle'))} their shortest-time bound ({fmt(s.get('oracle_steps'))} steps), "
                 f"worst alcove {ratio(s.get('later_vs_oracle_worst_goal'))}")
    for g, f in (s.get("per_goal") or {}).items():
        vs = f" ({ratio(f['later_vs_oracle'])} the oracle)" if f.get("later_vs_oracle") is not None else ""
        later = (f"later trials {fmt(f['later_mean_steps'])} steps{vs}"
                 if f["later_mean_steps"] is not None else "no later trial reached it")
        line += (f"\n    goal alcove {g}: {f['tasks']} task{'' if f['tasks'] == 1 else 's'}, "
                 f"{f['goals_per_task']:.2f} goals/task, trial 1 found it in {100 * f['trial1_success']:.0f}%, {later}")
    return line


def maze_walls(model) -> list[tuple[float, float, float, float, float]]:
    """(cx, cy, half_x, half_y, yaw) of the static box geoms of a MuJoCo world (the walls)."""
    import mujoco

    walls = []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] != 0 or model.geom_type[g] != mujoco.mjtGeom.mjGEOM_BOX:
            continue
        hx, hy, _ = model.geom_size[g]
        w, x, y, z = model.geom_quat[g]
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        cx, cy, _ = model.geom_pos[g]
        walls.append((float(cx), float(cy), float(hx), float(hy), yaw))
    return walls


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on robots or CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_trajectories(records: list[dict], mazes, path: Path, title: str, geometry=None) -> Path:
    """One panel per task: the maze, the goal alcove (green), each trial's path coloured by trial.
    ``mazes``: one MuJoCo model (with ``geometry``) for every task, or ``{task: (model, geometry)}``
    (a family: each task its own maze, drawn at a common scale)."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import Affine2D

    by_task: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    n = max(1, len(by_task))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), squeeze=False)
    per_task = mazes if isinstance(mazes, dict) else None
    cmap = plt.get_cmap("viridis")
    extent = 0.0
    for ax, (task, recs) in zip(axes[0], sorted(by_task.items())):
        model, geometry = per_task[task] if per_task is not None else (mazes, geometry)
        walls = maze_walls(model)
        extent = max([extent] + [max(abs(cx) + hx, abs(cy) + hy) for cx, cy, hx, hy, _ in walls])
        for cx, cy, hx, hy, yaw in walls:
            rect = Rectangle((-hx, -hy), 2 * hx, 2 * hy, color="0.35")
            rect.set_transform(Affine2D().rotate(yaw).translate(cx, cy) + ax.transData)
            ax.add_patch(rect)
        if geometry is not None and "goal" in recs[0]:
            x0, x1, y0, y1 = geometry.goal_region(int(recs[0]["goal"]))
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="tab:green", alpha=0.35))
        trials = max(r["trial"] for r in recs) + 1
        for r in recs:
            xy = np.asarray(r.get("path") or [[0.0, 0.0]])
            ax.plot(xy[:, 0], xy[:, 1], color=cmap(r["trial"] / max(1, trials - 1)), lw=1.2,
                    label=f"trial {r['trial'] + 1}: {r['steps']} st{'' if r['success'] else ' (no goal)'}")
        ax.set_title(f"task {task}, goal {recs[0].get('goal', '?')}", fontsize=9)
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.set_xticks([])
        ax.set_yticks([])
        if len(recs) <= 6:
            ax.legend(fontsize=6, loc="lower left")
    if per_task is not None:  # mazes of different sizes side by side, at one scale
        for ax in axes[0]:
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def _running_mean(y: np.ndarray, w: int) -> np.ndarray:
    """Mean over each window of ``w`` consecutive values (``len(y) - w + 1`` of them)."""
    return np.convolve(y, np.ones(w) / w, mode="valid")


def goals_by_alcove(rows: list[dict], w: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per goal alcove, (updates, running mean over ``w`` of its goals per task) from the
    log's ``trial_ends_by_goal``; an update only counts for the alcoves its tasks drew."""
    points: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for goal, value in (r.get("trial_ends_by_goal") or {}).items():
            points.setdefault(goal, []).append((r["update"], value))
    series = {}
    for goal, pts in sorted(points.items()):
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts], dtype=float)
        k = max(1, min(w, len(y)))
        series[goal] = (x[k - 1:], _running_mean(y, k))
    return series


def read_train_log(log_path: Path) -> list[dict]:
    """The records of a ``train_log.jsonl``, one per update (blank lines skipped)."""
    import json

    return [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]


def plot_learning_curve(log_path: Path, path: Path, title: str) -> Path:
    """Mean task return and goals per task against updates, from train_log.jsonl (for
    imitation runs also the teacher's share of the executed actions, dashed; for logs
    with ``trial_ends_by_goal`` a second panel with the goals per task by goal alcove)."""
    plt = _pyplot()

    rows = read_train_log(log_path)
    if any("reset_options" in r for r in rows):
        return _plot_variant_curve(rows, path, title)
    updates = np.array([r["update"] for r in rows])
    w = max(1, min(50, len(rows) // 20))  # running mean over w updates: one update is only a few tasks

    def faint_and_smooth(axis, values: list[float], color: str, label: str) -> None:
        y = np.asarray(values, dtype=float)
        axis.plot(updates, y, color=color, lw=0.5, alpha=0.25)
        axis.plot(updates[w - 1:], _running_mean(y, w), color=color, lw=1.5, label=label)

    kind = "imitation" if "teacher_share" in rows[0] else "PPO"
    by_alcove = goals_by_alcove(rows, w)
    if by_alcove:
        fig, (ax, ax3) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
        for goal, (x, y) in by_alcove.items():
            ax3.plot(x, y, lw=1.2, label=f"goal in alcove {goal}")
        ax3.set_xlabel(f"{kind} update (running mean over {w} updates that drew the alcove)")
        ax3.set_ylabel("goals per task")
        ax3.legend(fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(6, 3.4))
    faint_and_smooth(ax, [r["mean_return"] for r in rows], "tab:blue", "mean task return")
    if kind == "imitation":
        top = max(r["mean_return"] for r in rows)
        ax.plot(updates, [top * r["teacher_share"] for r in rows], color="gray", lw=1, ls="--",
                label="teacher share of the actions (1 at the top)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(f"{kind} update (faint: per update; bold: running mean over {w})")
    if by_alcove:
        ax.xaxis.set_tick_params(labelbottom=True)
    ax.set_ylabel("return", color="tab:blue")
    ax2 = ax.twinx()
    faint_and_smooth(ax2, [r["mean_trial_ends"] for r in rows], "tab:orange", "goals reached per task")
    ax2.set_ylabel("goals per task", color="tab:orange")
    ax.set_title(title, fontsize=10)
    return _save_figure(fig, path)


def _plot_variant_curve(rows: list[dict], path: Path, title: str) -> Path:
    """Mean reward per step against updates, one line per task variant (bandit horizon)."""
    plt = _pyplot()
    by_variant: dict[tuple, list[tuple[int, float]]] = {}
    for r in rows:
        key = tuple(sorted((r.get("reset_options") or {}).items()))
        by_variant.setdefault(key, []).append((r["update"], r["mean_reward_per_step"]))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for key, pts in sorted(by_variant.items()):
        label = ", ".join(f"{k}={v}" for k, v in key) or "all"
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        w = max(1, min(25, len(y) // 10))  # running mean over w updates of this variant
        ax.plot(x[w - 1:], _running_mean(y, w), lw=1.2, label=label)
    ax.set_xlabel("imitation update" if "teacher_share" in rows[0] else "PPO update")
    ax.set_ylabel("mean reward per step (running mean)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save_figure(fig, path)


def spike_rate_hz(rec: dict, step_seconds: float = 0.2) -> float:
    """Mean firing rate per neuron of a ``record_lsnn_task`` recording. Each row samples
    one network tick (the step's last), and a step of ``step_seconds`` holds
    ``ticks_per_step`` ticks, so a tick lasts ``step_seconds / ticks_per_step``."""
    z = rec["z"]
    if not z.size:
        return 0.0
    return float(z.mean()) * int(rec.get("ticks_per_step", 1)) / step_seconds


def plot_spike_raster(rec: dict, path: Path, title: str) -> Path:
    """Spikes of every neuron across one task, and the ALIF neurons' adaptation b.

    Vertical lines mark goal entries (trial ends): what the network has to carry
    from one trial to the next lives in the slow adaptation variables.
    """
    plt = _pyplot()

    z, b, n_lif = rec["z"], rec["b"], rec["n_lif"]
    steps = np.arange(len(z))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    t_idx, n_idx = np.nonzero(z)
    colors = np.where(n_idx < n_lif, "tab:blue", "tab:red")
    ax1.scatter(t_idx, n_idx, s=1.5, c=colors, marker="|", linewidths=0.6)
    ax1.axhline(n_lif - 0.5, color="0.6", lw=0.6)
    ax1.set_ylabel(f"neuron (LIF 0-{n_lif - 1} blue, ALIF red)", fontsize=8)
    alif_b = b[:, n_lif:]
    if alif_b.size:
        ax2.plot(steps, alif_b.mean(1), color="tab:red", lw=1, label="mean b (ALIF)")
        ax2.fill_between(steps, np.percentile(alif_b, 10, 1), np.percentile(alif_b, 90, 1),
                         color="tab:red", alpha=0.2, lw=0, label="10-90%")
        ax2.legend(fontsize=7, loc="upper left")
    ax2.set_ylabel("adaptation b", fontsize=8)
    ax2.set_xlabel(f"control step ({rec.get('step_seconds', 0.2):g} s)")
    for ax in (ax1, ax2):
        for t in rec["trial_ends"]:
            ax.axvline(t, color="tab:green", lw=0.8, ls="--")
    ticks = int(rec.get("ticks_per_step", 1))
    shown = f"; the last of {ticks} ticks per step shown" if ticks > 1 else ""
    ax1.set_title(f"{title}: goal {rec['goal']}, {len(rec['trial_ends'])} goal entries (green), "
                  f"mean rate {spike_rate_hz(rec, rec.get('step_seconds', 0.2)):.2f} spikes/s per neuron{shown}", fontsize=9)
    return _save_figure(fig, path)


def plot_arm_adaptation(records_by_agent: dict[str, list[dict]], trace: dict[str, list[float]], path: Path,
                        title: str) -> Path:
    """Left: mean steps each successive reach of a task took, per agent (reach 1 includes
    finding out how the arm responds; later reaches show what was learnt). Right: the
    tool-target distance over one task, per agent, reaches where it drops."""
    plt = _pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, records in records_by_agent.items():
        longest = max((len(r["reach_steps"]) for r in records), default=0)
        k = [i for i in range(longest) if sum(len(r["reach_steps"]) > i for r in records) >= 5]
        if k:
            mean = [np.mean([r["reach_steps"][i] for r in records if len(r["reach_steps"]) > i]) for i in k]
            ax1.plot(np.array(k) + 1, mean, marker="o", ms=3, label=name)
    ax1.set_xlabel("reach within the task (tasks with at least 5 such reaches)")
    ax1.set_ylabel("control steps to the target (0.05 s)")
    ax1.legend(fontsize=7)
    for name, d in trace.items():
        ax2.plot(d, lw=1, label=name)
    ax2.set_xlabel("control step")
    ax2.set_ylabel("tool-target distance (m)")
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)
