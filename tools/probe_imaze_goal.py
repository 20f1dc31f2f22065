"""Which bits of the goal does an I-maze LSNN hold in later trials? Linear probes.

    PYTHONPATH=. python tools/probe_imaze_goal.py models/imaze_lsnn/policy.json fixed junction

Records the ALIF thresholds and readout traces after every step of tasks of seed 900
(60 to fit, 20 to test), keeps up to 3 steps per later trial (``start``: the trial's first
steps; ``junction``: on a crossbar within 0.15 m of the stem's axis, where the turn is
chosen), and prints the held-out accuracy of softmax regressions for the goal alcove and
for its crossbar, its side and the turn it needs (docs/imaze_family.md).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from l2l_ros.evaluation import StateRecorder, run_imaze_tasks
from l2l_ros.policy_runtime import load_runtime


def samples(runtime, family: str, where: str, first: int, count: int):
    X, y = [], []
    for task in range(first, first + count):
        rec = StateRecorder(runtime)
        records = run_imaze_tasks(rec, 1, 900, first_task=task, env_kwargs={"family": family}, keep_paths=True)
        trials = [r["trial"] for r in records for _ in r["path"]]  # one per step, as the recorder's rows
        path = [p for r in records for p in r["path"]]
        taken: dict[int, int] = {}
        for trial, b, trace, (px, py) in zip(trials, rec.b, rec.trace, path):
            at = abs(px) < 0.15 and abs(py) > 0.35 if where == "junction" else True
            if trial >= 1 and at and taken.get(trial, 0) < 3:
                taken[trial] = taken.get(trial, 0) + 1
                X.append(np.concatenate([b, trace]))
                y.append(records[0]["goal"])
    return torch.tensor(np.array(X), dtype=torch.float32), torch.tensor(y)


def probe(Xtr, ytr, Xte, yte, classes: int) -> float:
    w = torch.zeros(Xtr.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.01)
    for _ in range(1500):
        loss = torch.nn.functional.cross_entropy(Xtr @ w + b, ytr) + 1e-3 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(((Xte @ w + b).argmax(1) == yte).float().mean())


def main(checkpoint: str, family: str = "fixed", where: str = "junction") -> None:
    torch.set_num_threads(1)
    runtime = load_runtime(checkpoint, "imaze")
    Xtr, ytr = samples(runtime, family, where, 0, 60)
    Xte, yte = samples(runtime, family, where, 60, 20)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    print(f"{checkpoint} on {family}, {where}: {len(ytr)} fitting / {len(yte)} held-out steps")
    bits = {"alcove (chance 0.25)": (lambda g: g, 4), "crossbar N/S": (lambda g: (g <= 1).long(), 2),
            "side +x/-x": (lambda g: ((g == 0) | (g == 3)).long(), 2),
            "turn left {1,3} / right {0,2}": (lambda g: ((g == 1) | (g == 3)).long(), 2)}
    for name, (label, k) in bits.items():
        print(f"{name}: {probe(Xtr, label(ytr), Xte, label(yte), k):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
