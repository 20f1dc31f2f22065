"""RL² Table 1 for our policies: classical baselines and checkpoints on the same bandits.

``evaluate_bandits`` samples ``episodes`` bandits ``p ~ U[0, 1]^k`` and one common
stream of uniforms ``u[episode, t]`` (reward of pull t = ``u < p[arm]``) from ``seed``,
so every policy, baseline or checkpoint, plays the same bandits with the same luck.
Checkpoints run batched over all bandits with the exact observation that
``MetaWrapper(BernoulliBanditEnv(k, n))`` gives (``meta_bandit_obs``, shared with the
vector env). Each checkpoint is reported twice: ``NAME`` (actions sampled from the
policy, as ``ppo.evaluate(deterministic=False)``) and ``NAME/argmax``; ``action_rules``
says which of the two is the model's own way to play (``action_rule``).

The CLI owner wires ``l2l eval bandit`` to :func:`main_eval_bandit` with the arguments
of :func:`add_bandit_eval_arguments`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib

import numpy as np
import torch

from l2l_ros.tasks.bandit import N_TIME_FEATURES, meta_bandit_obs
from l2l_ros.tasks.bandit_baselines import run_baseline

__all__ = ["PAPER_TABLE1", "action_rule", "evaluate_bandits", "run_checkpoint_on_bandits",
           "add_bandit_eval_arguments", "main_eval_bandit", "TABLE_BASELINES"]

# Duan et al. 2016 (RL²), Table 1: total reward, mean over 1000 bandits, keyed (n, k).
PAPER_TABLE1 = {
    (10, 5): {"random": 5.0, "gittins": 6.6, "ucb1": 6.7, "thompson": 5.7, "rl2_gru": 6.7},
    (100, 5): {"random": 49.9, "gittins": 78.3, "ucb1": 78.0, "thompson": 74.7, "rl2_gru": 78.7},
    (100, 10): {"random": 49.9, "gittins": 82.8, "ucb1": 82.4, "thompson": 76.7, "rl2_gru": 83.5},
    (500, 10): {"random": 249.0, "gittins": 437.8, "ucb1": 437.1, "thompson": 429.5, "rl2_gru": 432.5},
}
TABLE_BASELINES = ("random", "greedy", "ucb1", "ucb1_scaled", "thompson", "gittins", "oracle")


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    sem = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return {"mean": float(x.mean()), "sem": sem}


def _exploration(behaviour: dict) -> dict:
    return {"arms_tried": float(behaviour["arms_tried"].mean()),
            "best_arm_share": float(behaviour["best_arm_share"].mean())}


def run_checkpoint_on_bandits(policy, k: int, n: int, probs: np.ndarray, uniforms: np.ndarray,
                              deterministic: bool, seed: int = 0, behaviour: dict | None = None) -> np.ndarray:
    """Total reward of a recurrent policy on each bandit ``probs[E, k]`` (batched).

    ``behaviour``, if given, receives per-bandit ``arms_tried`` (distinct arms pulled)
    and ``best_arm_share`` (fraction of pulls on the best arm): how a model explores.
    """
    E = probs.shape[0]
    obs_dim = N_TIME_FEATURES + k + 2
    if getattr(policy, "obs_dim", obs_dim) != obs_dim:
        raise ValueError(f"policy takes {policy.obs_dim} inputs; a {k}-armed bandit gives {obs_dim}")
    spec = getattr(policy, "action_spec", {"type": "discrete", "n": k})
    if spec.get("type") != "discrete" or int(spec.get("n", -1)) != k:
        raise ValueError(f"policy action space {spec} is not Discrete({k})")
    rows = np.arange(E)
    total = np.zeros(E)
    pulled = np.zeros((E, k), dtype=bool)
    on_best = np.zeros(E)
    best = probs.argmax(axis=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = policy.initial_state(E)
        prev_a = np.zeros(E, dtype=np.int64)
        prev_r = np.zeros(E, dtype=np.float32)
        for t in range(n):
            obs = meta_bandit_obs(t, n, k, prev_a, prev_r, np.full(E, t == 0))
            action, _, _, state = policy.act(torch.from_numpy(obs), state, deterministic=deterministic)
            a = action.cpu().numpy().astype(np.int64).reshape(E)
            r = uniforms[:, t] < probs[rows, a]
            total += r
            pulled[rows, a] = True
            on_best += a == best
            prev_a, prev_r = a, r.astype(np.float32)
    if behaviour is not None:
        behaviour["arms_tried"] = pulled.sum(axis=1)
        behaviour["best_arm_share"] = on_best / n
    return total


def action_rule(meta: dict) -> str:
    """How a saved bandit policy plays: ``"argmax"`` if it was trained on Gittins index
    targets (``--teacher-index-tau``: its logits are index estimates, and the index policy
    plays the highest), else ``"sampled"``, as PPO and distillation train and score it."""
    cfg = meta.get("train_config") or {}
    return "argmax" if float(cfg.get("teacher_index_tau") or 0.0) > 0 else "sampled"


def evaluate_bandits(k: int, n: int, episodes: int, seed: int,
                     checkpoints: dict[str, str] | None = None,
                     baselines: tuple[str, ...] = TABLE_BASELINES, progress: bool = False) -> dict:
    """Every baseline and checkpoint on the same ``episodes`` bandits; see the module doc.

    Returns ``{"k", "n", "episodes", "seed", "policies": {name: {"mean", "sem",
    "seconds"}}, "action_rules": {checkpoint name: "sampled" or "argmax"}, "paper": {...}
    (RL² Table 1 row, or {} when (n, k) is not in it)}``;
    every policy also gets "arms_tried" and "best_arm_share" (means over the bandits).
    """
    from l2l_ros.meta.checkpoint import load_checkpoint

    k, n, episodes = int(k), int(n), int(episodes)
    if k < 1 or n < 1 or episodes < 1:
        raise ValueError("need k >= 1, n >= 1, episodes >= 1")
    task_rng = np.random.default_rng([int(seed), 0])
    probs = task_rng.uniform(0.0, 1.0, size=(episodes, k))
    uniforms = task_rng.random((episodes, n))
    out: dict = {"k": k, "n": n, "episodes": episodes, "seed": int(seed), "policies": {}, "action_rules": {},
                 "cost_per_control_step": {}}
    from tqdm import tqdm

    bar = tqdm(total=len(baselines) + len(checkpoints or {}), disable=not progress, leave=False, unit="policy")
    for name in baselines:
        bar.set_description(name)
        bar.update()
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(seed), 1, zlib.crc32(name.encode())])  # per-policy stream
        behaviour: dict = {}
        totals = run_baseline(name, k, n, probs, rng, uniforms, behaviour=behaviour)
        out["policies"][name] = {**_stats(totals), "seconds": round(time.perf_counter() - t0, 3),
                                 **_exploration(behaviour)}
    for name, path in (checkpoints or {}).items():
        bar.set_description(name)
        bar.update()
        policy, meta = load_checkpoint(path)
        out["action_rules"][name] = action_rule(meta)
        for suffix, det in (("", False), ("/argmax", True)):
            t0 = time.perf_counter()
            behaviour: dict = {}
            own_rule = det == (out["action_rules"][name] == "argmax")
            if own_rule and hasattr(policy, "count_spikes"):  # the cost of the model's own play
                policy.count_spikes()
            totals = run_checkpoint_on_bandits(policy, k, n, probs, uniforms, det, seed=int(seed),
                                               behaviour=behaviour)
            if own_rule:
                from l2l_ros.cost import policy_cost

                out["cost_per_control_step"][name] = policy_cost(policy, episodes * n)
                policy.spike_counter = None
            out["policies"][name + suffix] = {
                **_stats(totals), "seconds": round(time.perf_counter() - t0, 3), **_exploration(behaviour)}
    bar.close()
    out["paper"] = dict(PAPER_TABLE1.get((n, k), {}))
    if out["paper"]:
        out["paper"]["source"] = "Duan et al. 2016 (RL^2), Table 1"
    return out


BUNDLED_BANDIT_MODELS = {"spiking": "models/bandit_k{k}_lsnn/policy.json",
                         "lstm": "models/bandit_k{k}_lstm/policy.json"}


def bundled_bandit_models(k: int) -> dict[str, str]:
    """The bundled spiking and LSTM models for ``k`` arms that exist (source tree or share/)."""
    from l2l_ros.resources import share_path

    found = {}
    for name, template in BUNDLED_BANDIT_MODELS.items():
        path = share_path(*template.format(k=k).split("/"))
        if path.exists():
            found[name] = str(path)
    return found


def add_bandit_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--arms K --pulls N --episodes E --seed S --json [--checkpoint NAME=PATH ...]``."""
    from l2l_ros.argtypes import positive_int

    parser.add_argument("--arms", type=positive_int, default=5, help="number of arms k (default 5)")
    parser.add_argument("--pulls", type=positive_int, default=100, help="horizon n, pulls per bandit (default 100)")
    parser.add_argument("--episodes", type=positive_int, default=1000, help="bandits sampled (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bandits and reward draws")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="also evaluate this checkpoint (repeatable)")
    parser.add_argument("--no-bundled", action="store_true",
                        help="leave out the bundled spiking and LSTM models for this k")
    return parser


def _parse_checkpoints(specs) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = str(spec).partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--checkpoint wants NAME=PATH, got {spec!r}")
        out[name] = path
    return out


def main_eval_bandit(args: argparse.Namespace) -> int:
    """Run :func:`evaluate_bandits` from parsed arguments and print the result."""
    from l2l_ros.meta.checkpoint import CheckpointError

    try:
        checkpoints = {} if getattr(args, "no_bundled", False) else bundled_bandit_models(args.arms)
        checkpoints.update(_parse_checkpoints(getattr(args, "checkpoint", [])))
        res = evaluate_bandits(args.arms, args.pulls, args.episodes, args.seed, checkpoints,
                               progress=not getattr(args, "json", False))
    except (ValueError, CheckpointError, OSError) as e:
        print(f"l2l eval bandit: {e}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['k']}-armed Bernoulli bandit, {res['n']} pulls, {res['episodes']} bandits "
          f"(seed {res['seed']}): total reward, mean ± s.e.; arms tried; share of pulls on the best arm")
    paper = res["paper"]
    own = {name + ("/argmax" if rule == "argmax" else "") for name, rule in res["action_rules"].items()}
    for name, st in res["policies"].items():
        ref = paper.get(name)
        extra = f"   (RL² Table 1: {ref})" if ref is not None else ""
        extra += "   <- the model's own rule" if name in own else ""
        print(f"  {name:<20} {st['mean']:9.2f} ± {st['sem']:.2f}   {st['arms_tried']:4.1f} "
              f"{100 * st['best_arm_share']:4.0f}%{extra}")
    if "rl2_gru" in paper:
        print(f"  RL² (GRU) in the paper: {paper['rl2_gru']}")
    from l2l_ros.cost import cost_line

    for name, cost in res["cost_per_control_step"].items():
        print(f"  {cost_line(name, cost)}")
    return 0
