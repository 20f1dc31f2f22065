"""How likely is an I-maze policy to turn towards the goal where it chooses the turn?

    PYTHONPATH=. python tools/imaze_junction_turns.py models/imaze_lsnn/policy.json 60

Runs the policy greedily on the first N tasks of the default maze and, on every step of a
later trial that is on the goal's crossbar within 0.15 m of the stem's axis (the junction),
reads its action probabilities. Arriving from the stem, left leads to alcove 1 on the north
crossbar and to 3 on the south one. Prints, per goal alcove, the mean probability of
the turn towards the goal, of the turn away from it, and of forward. A turn that the
policy almost never samples is one that PPO cannot learn to take (docs/imaze_family.md).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from l2l_ros.evaluation import run_imaze_tasks
from l2l_ros.policy_runtime import load_runtime
from l2l_ros.tasks.imaze_family import IMazeGeometry
from l2l_ros.tasks.meta_wrapper import meta_features

FORWARD, LEFT, RIGHT = 0, 1, 2


class ProbabilityRecorder:
    """The agent ``run_imaze_tasks`` drives: the runtime's greedy action, and beside it the
    trial number and the action probabilities of each step."""

    def __init__(self, runtime):
        self.rt, self.rows, self.trial, self.steps = runtime, [], 0, 0

    def reset(self) -> None:
        self.rt.reset()
        self.trial, self.steps = 0, 0

    def step(self, obs, reward, trial_start, deterministic=True):
        if trial_start and self.steps > 0:
            self.trial += 1
        x = np.concatenate([obs, meta_features(self.rt.prev_action, reward, trial_start, self.rt.action_space)])
        with torch.no_grad():
            params, _, _ = self.rt.policy.forward_sequence(torch.as_tensor(x, dtype=torch.float32)[None, None],
                                                           self.rt.state)
        self.rows.append((self.trial, torch.softmax(params[0, 0], -1).numpy()))
        self.steps += 1
        return self.rt.step(obs, reward, trial_start, deterministic)


def main(checkpoint: str, tasks: int) -> None:
    torch.set_num_threads(1)
    runtime = load_runtime(checkpoint, "imaze")
    maze = IMazeGeometry()
    per_goal: dict[int, list] = {g: [] for g in range(4)}
    for task in range(tasks):
        agent = ProbabilityRecorder(runtime)
        records = run_imaze_tasks(agent, 1, 900, first_task=task, keep_paths=True)
        goal = records[0]["goal"]
        sx, sy = IMazeGeometry.goal_signs(goal)
        towards_left = (sx < 0) if sy > 0 else (sx > 0)
        path = [p for r in records for p in r["path"]]
        for (trial, p), (x, y) in zip(agent.rows, path):
            if trial >= 1 and abs(x) < 0.15 and sy * y > maze.stem_half_length - 0.1:
                towards, away = (p[LEFT], p[RIGHT]) if towards_left else (p[RIGHT], p[LEFT])
                per_goal[goal].append((towards, away, p[FORWARD]))
    print(f"{checkpoint}, {tasks} tasks of seed 900, later trials at the junction:")
    for goal, rows in per_goal.items():
        if rows:
            a = np.array(rows).mean(0)
            print(f"  goal {goal}: {len(rows)} steps; P(turn towards goal) {a[0]:.3f}, "
                  f"P(turn away) {a[1]:.3f}, P(forward) {a[2]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60)
