"""Recipes: the whole training chain of a bundled model, teachers included, as data.

A recipe is one TOML file in ``recipes/`` (installed under ``share/l2l_ros/recipes``)::

    description = "..."
    family = "imaze"             # imaze | bandit | manipulator
    model = "imaze_lsnn"         # the bundled model it rebuilds (models/<model>)
    after = "imaze_lstm"         # optional: that recipe's stages run first, then these
    arms = 10                    # bandit only
    [defaults]                   # settings of every stage
    num_envs = 16
    [[stages]]                   # run in order, each in OUT/<name>
    name = "teacher"
    policy = "lstm"
    updates = 300
    [[stages]]
    name = "student"
    teacher = "@teacher"         # "@stage": that stage's checkpoint
    init_from = "@teacher"
    [evaluation]                 # what the model card reports, and its targets
    tasks = 200
    seed = 777                   # I-maze: also family = "sim2real" (default "fixed")
    [smoke]                      # `--scale smoke`: overrides of every stage and of the evaluation
    updates = 2

A stage's settings are ``l2l train``'s: ``policy``, ``updates``, ``num_envs``, ``seed``,
``horizons`` and any field of ``TrainConfig``. Each stage trains in a fresh process
(``train_stage``), so it gives what ``l2l train`` gives for it alone. Each stage resumes from its folder
(the trainer does), so rerunning the same command after a kill continues where it
stopped; finished stages are not trained again. The run ends with the evaluation,
written to ``OUT/evaluation.json`` with the time to criterion: the seconds of every
stage's updates, teachers included.
"""
from __future__ import annotations

import json
import pickle
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from l2l_ros.families import FAMILIES, train_config
from l2l_ros.resources import share_path

SCALES = ("full", "smoke")
STAGE_ARGS = {"name", "policy", "updates", "num_envs", "seed", "horizons", "env_kwargs"}
RECIPE_KEYS = {"description", "family", "model", "arms", "after", "defaults", "stages", "evaluation", "smoke"}
#: Evaluation settings per family (all optional in the file).
EVALUATION_KEYS = {
    "imaze": {"tasks", "seed", "family"},
    "bandit": {"episodes", "seed", "horizons", "target_horizons", "target_fraction_of_gittins"},
    "manipulator": {"tasks", "seed"},
}
SMOKE_EVALUATION = {"imaze": {"tasks": 2}, "bandit": {"episodes": 20}, "manipulator": {"tasks": 1}}


class RecipeError(ValueError):
    """A recipe file that cannot be run as written."""


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    description: str
    family: str
    model: str
    arms: int
    stages: list[dict]
    evaluation: dict = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)

    def stage_settings(self, scale: str = "full") -> list[dict]:
        """Every stage's settings with the defaults and, at ``smoke`` scale, its overrides."""
        smoke = {k: v for k, v in self.smoke.items() if k != "evaluation"} if scale == "smoke" else {}
        return [{**stage, **smoke} for stage in self.stages]

    def evaluation_settings(self, scale: str = "full") -> dict:
        if scale != "smoke":
            return dict(self.evaluation)
        return {**self.evaluation, **SMOKE_EVALUATION[self.family], **self.smoke.get("evaluation", {})}


def recipe_dir() -> Path:
    return share_path("recipes")


def list_recipes() -> dict[str, str]:
    """``{name: first line of its description}`` of every bundled recipe."""
    return {p.stem: load_recipe(p).description.strip().splitlines()[0]
            for p in sorted(recipe_dir().glob("*.toml"))}


def load_recipe(name_or_path: str | Path, _after: tuple[str, ...] = ()) -> Recipe:
    """A bundled recipe by name, or a recipe file; every key is checked before anything runs.
    The file's ``after`` key names a recipe whose stages (with its own defaults) come first;
    ``_after`` holds the files already on that chain, so a loop is refused."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = recipe_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise RecipeError(f"no recipe {name_or_path!r}; `l2l train --list-recipes` lists them")
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"recipe {path}: {exc}") from None
    unknown = set(doc) - RECIPE_KEYS
    if unknown:
        raise RecipeError(f"recipe {path}: unknown keys {sorted(unknown)}")
    family = doc.get("family")
    if family not in FAMILIES:
        raise RecipeError(f"recipe {path}: family must be one of {sorted(FAMILIES)}, got {family!r}")
    defaults = dict(doc.get("defaults", {}))
    stages = [{**defaults, **s} for s in doc.get("stages", [])]
    if "after" in doc:
        if str(path) in _after:
            raise RecipeError(f"recipe {path}: 'after' leads back to itself")
        first = load_recipe(doc["after"], (*_after, str(path)))
        if first.family != family:
            raise RecipeError(f"recipe {path}: after {doc['after']!r} trains the {first.family} family, not {family}")
        stages = first.stages + stages
    if not stages:
        raise RecipeError(f"recipe {path}: no [[stages]]")
    from l2l_ros.meta.config import TrainConfig

    allowed = STAGE_ARGS | set(TrainConfig.__dataclass_fields__)
    seen: list[str] = []
    for i, stage in enumerate(stages):
        name = stage.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name in seen:
            raise RecipeError(f"recipe {path}: stage {i + 1} needs a unique identifier as name, got {name!r}")
        bad = set(stage) - allowed
        if bad:
            raise RecipeError(f"recipe {path}: stage {name!r}: unknown settings {sorted(bad)}")
        for key in ("teacher", "init_from"):
            ref = stage.get(key)
            if isinstance(ref, str) and ref.startswith("@") and ref[1:] not in seen:
                raise RecipeError(f"recipe {path}: stage {name!r}: {key} {ref!r} names no earlier stage")
        seen.append(name)
    evaluation = dict(doc.get("evaluation", {}))
    smoke = dict(doc.get("smoke", {}))
    for where, keys in (("evaluation", evaluation), ("smoke.evaluation", smoke.get("evaluation", {}))):
        bad = set(keys) - EVALUATION_KEYS[family]
        if bad:
            raise RecipeError(f"recipe {path}: unknown {where} settings {sorted(bad)}")
    bad = set(smoke) - allowed - {"evaluation"}
    if bad:
        raise RecipeError(f"recipe {path}: unknown smoke settings {sorted(bad)}")
    return Recipe(name=path.stem, path=path, description=str(doc.get("description", path.stem)),
                  family=family, model=str(doc.get("model", "")), arms=int(doc.get("arms", 5)),
                  stages=stages, evaluation=evaluation, smoke=smoke)


def stage_config(recipe: Recipe, settings: dict, out: Path):
    """The TrainConfig of one stage; ``@stage`` references become that stage's checkpoint."""
    s = dict(settings)
    for key in ("teacher", "init_from"):
        if isinstance(s.get(key), str) and s[key].startswith("@"):
            s[key] = str(out / s[key][1:] / "policy.json")
    s.pop("name")
    policy, updates = s.pop("policy", "lsnn"), int(s.pop("updates", 200))
    num_envs, seed = int(s.pop("num_envs", 16)), int(s.pop("seed", 0))
    horizons = s.pop("horizons", None)
    if isinstance(horizons, list):
        horizons = ",".join(str(h) for h in horizons)
    return train_config(recipe.family, policy, updates, num_envs, seed, s.pop("env_kwargs", None),
                        arms=recipe.arms, horizons=horizons, **s)


def run_recipe(recipe: Recipe, out: str | Path, scale: str = "full",
               should_stop: Callable[[], bool] | None = None,
               progress: Callable[[dict], None] | None = None,
               log: Callable[[str], None] = print, command: str | None = None,
               device: str = "cpu") -> dict | None:
    """Every stage in order (each resumes, on ``device``), then the evaluation. Returns the summary
    written to ``OUT/evaluation.json``, or None when ``should_stop`` ended it early."""
    from l2l_ros.report import plot_learning_curve, read_train_log

    if scale not in SCALES:
        raise RecipeError(f"scale must be one of {SCALES}, got {scale!r}")
    out = Path(out)
    stages = recipe.stage_settings(scale)
    configs = [stage_config(recipe, s, out) for s in stages]  # every stage checked before the first runs
    summary: dict[str, Any] = {"recipe": recipe.name, "scale": scale, "family": recipe.family,
                               "model": recipe.model, "stages": []}
    for settings, cfg in zip(stages, configs):
        folder = out / settings["name"]
        log(f"recipe {recipe.name}: stage {settings['name']} ({cfg.policy}, {cfg.updates} updates) -> {folder}")
        weights = train_stage(cfg, folder, progress=progress, should_stop=should_stop,
                              command=(command or f"l2l train --recipe {recipe.name}") + f"  # stage {settings['name']}",
                              device=device)
        if should_stop is not None and should_stop():
            return None
        plot_learning_curve(folder / "train_log.jsonl", folder / "learning_curve.png",
                            f"{cfg.policy} on {recipe.family}: {recipe.name} / {settings['name']}")
        rows = read_train_log(folder / "train_log.jsonl")  # one per update: a resumed run counts each once
        summary["stages"].append({"name": settings["name"], "policy": cfg.policy, "updates": len(rows),
                                  "update_seconds": round(sum(r["update_seconds"] for r in rows), 3),
                                  "checkpoint": str(weights)})
    summary["time_to_criterion_s"] = round(sum(s["update_seconds"] for s in summary["stages"]), 3)
    final = out / stages[-1]["name"] / "policy.json"
    summary["checkpoint"] = str(final)
    log(f"recipe {recipe.name}: evaluating {final}")
    summary["evaluation"] = evaluate_recipe_model(recipe.family, final, recipe.arms,
                                                  recipe.evaluation_settings(scale))
    summary["targets_met"] = summary["evaluation"].get("targets_met")
    (out / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train_stage(cfg, folder: Path, progress: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None, command: str = "", device: str = "cpu") -> Path:
    """``train(cfg, folder, ...)`` in a fresh interpreter (multiprocessing "spawn"), so that a
    stage gives the weights it gives when run alone by ``l2l train``. In one process it does
    not: TorchScript's executor replaces a scripted function's graph by a specialized one
    after its first calls, whose floating-point results differ in the last bits, and a
    spiking stage after another one starts with the specialized graph. Measured on the
    bundled I-maze chain: its third stage, run after the second in one process, diverged
    from the same stage run alone at its first update (docs/training.md).

    The parent relays ``progress`` (one dict per update) and ``should_stop`` (the child
    finishes the update, saves and returns); the child ignores Ctrl-C, which the parent
    turns into ``should_stop``, and dies with the parent. A second Ctrl-C in the parent
    (KeyboardInterrupt) kills the child at once, as it interrupts a single-process run."""
    import multiprocessing
    import queue
    import torch

    ctx = multiprocessing.get_context("spawn")
    stop, messages = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_stage_worker, name=f"stage {folder.name}",
                        args=(cfg, str(folder), command, device, torch.get_num_threads(), stop, messages))
    child.start()
    outcome: tuple | None = None
    try:
        while outcome is None:
            if should_stop is not None and should_stop():
                stop.set()
            try:
                kind, value = messages.get(timeout=0.2)
            except queue.Empty:
                if not child.is_alive():
                    break
                continue
            if kind == "progress":
                if progress is not None:
                    progress(value)
            else:
                outcome = (kind, value)
        child.join()
    finally:
        if child.is_alive():  # a second Ctrl-C (or an error here): stop it now, as a kill would
            child.kill()
            child.join()
    if outcome is None:
        raise RuntimeError(f"the training process of stage {folder.name} died (exit code {child.exitcode}); "
                           f"the same command resumes from its last checkpoint in {folder}")
    kind, value = outcome
    if kind == "error":
        raise value
    return Path(value)


def _stage_worker(cfg, folder: str, command: str, device: str, threads: int, stop, messages) -> None:
    """The child of :func:`train_stage`: one ``train`` call, its progress and its result or
    exception sent back on ``messages``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into ``stop``
    _die_with_parent()
    import torch

    from l2l_ros.meta.train import train

    torch.set_num_threads(threads)
    try:
        weights = train(cfg, Path(folder), progress=lambda row: messages.put(("progress", dict(row))),
                        should_stop=stop.is_set, command=command, device=device)
        messages.put(("done", str(weights)))
    except BaseException as exc:  # raised again in the parent, with its message
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an exception that cannot cross to the parent as it is
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        messages.put(("error", exc))


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), so a
    killed recipe run leaves no stage training on behind it."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def evaluate_recipe_model(family: str, checkpoint: Path, arms: int, settings: dict) -> dict:
    """The model card's evaluation of ``checkpoint`` and whether it meets its targets."""
    if family == "imaze":
        from l2l_ros.evaluation import evaluate_imaze_checkpoint, imaze_oracle_figures

        figures = evaluate_imaze_checkpoint(str(checkpoint), int(settings.get("tasks", 200)),
                                            seed=int(settings.get("seed", 777)),
                                            family=settings.get("family", "fixed"))
        targets = imaze_oracle_figures()["targets"]
        m = figures["model"]
        # A figure that could not be measured (None: no trial reached the goal; NaN) fails.
        ok = lambda value, test: value is not None and bool(test(value))  # noqa: E731
        checks = {"success_rate_uncut": ok(m["success_rate_uncut"], lambda v: v >= targets["success_rate_min"]),
                  "trial1_mean_steps": ok(m["trial1_mean_steps"], lambda v: v <= targets["trial1_mean_steps_max"]),
                  "later_mean_steps": ok(m["later_mean_steps"], lambda v: v <= targets["later_mean_steps_max"])}
        return {**figures, "targets": targets, "checks": checks, "targets_met": all(checks.values())}
    if family == "bandit":
        from l2l_ros.bandit_eval import action_rule, evaluate_bandits
        from l2l_ros.meta.checkpoint import read_metadata

        rule = action_rule(read_metadata(checkpoint))
        fraction = float(settings.get("target_fraction_of_gittins", 0.98))
        targets = [int(n) for n in settings.get("target_horizons", [])]
        rows, checks = {}, {}
        for n in settings.get("horizons", [10, 100, 500]):
            ev = evaluate_bandits(arms, int(n), int(settings.get("episodes", 1000)), int(settings.get("seed", 0)),
                                  checkpoints={"model": str(checkpoint)}, baselines=("gittins", "random"))
            pol = ev["policies"]
            mine = pol["model/argmax" if rule == "argmax" else "model"]["mean"]
            rows[str(n)] = {"model": mine, "action_rule": rule, "gittins": pol["gittins"]["mean"],
                            "random": pol["random"]["mean"], "fraction_of_gittins": mine / pol["gittins"]["mean"]}
            if int(n) in targets:
                checks[f"n{n}"] = mine >= fraction * pol["gittins"]["mean"]
        return {"arms": arms, "rows": rows, "target_fraction_of_gittins": fraction, "checks": checks,
                "targets_met": all(checks.values()) if checks else None}
    if family == "manipulator":
        return evaluate_arm_model(checkpoint, int(settings.get("tasks", 200)), int(settings.get("seed", 777)))
    return {"targets_met": None, "note": "no evaluation for this family yet"}


#: Issue 30's targets for an arm policy against the oracle controller (told the calibration).
ARM_TARGETS = {"targets_vs_oracle_min": 0.9, "later_reach_vs_oracle_max": 1.15}


def evaluate_arm_model(checkpoint: Path, tasks: int, seed: int) -> dict:
    """The arm policy and the oracle controller on the same tasks, and issue 30's checks."""
    from l2l_ros.evaluation import (arm_controller, run_manipulator_tasks, summarize_manipulator,
                                    versus_oracle)
    from l2l_ros.policy_runtime import load_runtime

    model = summarize_manipulator(run_manipulator_tasks(load_runtime(str(checkpoint), "manipulator"), tasks, seed))
    oracle = summarize_manipulator(run_manipulator_tasks(arm_controller("oracle"), tasks, seed))
    ratios = versus_oracle(model, oracle)
    ratio, later = ratios["targets_vs_oracle"], ratios["later_reach_vs_oracle"]
    checks = {"targets_vs_oracle": ratio is not None and ratio >= ARM_TARGETS["targets_vs_oracle_min"],
              "later_reach_vs_oracle": later is not None and later <= ARM_TARGETS["later_reach_vs_oracle_max"]}
    return {"tasks": tasks, "seed": seed, "model": model, "oracle": oracle, **ratios, "targets": ARM_TARGETS,
            "checks": checks, "targets_met": all(checks.values())}
