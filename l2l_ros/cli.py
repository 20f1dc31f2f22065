"""The `l2l` command: train, eval, bench and run, without needing a ROS install for the first three."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from l2l_ros.argtypes import positive_int
from l2l_ros.families import FAMILIES, train_config
from l2l_ros.recipes import SCALES


def _command_line(argv: list[str]) -> str:
    return "l2l " + " ".join(shlex.quote(a) for a in argv)


# --- train ---------------------------------------------------------------------------
def cmd_train(args, argv) -> int:
    if args.list_recipes:
        from l2l_ros.recipes import list_recipes

        for name, line in list_recipes().items():
            print(f"{name:20s} {line}")
        return 0
    if not args.out:
        raise ValueError("--out DIR is required: the run folder (resumes if present)")
    if args.recipe:
        return cmd_train_recipe(args, argv)
    if not args.family:
        raise ValueError("name a task family (imaze, manipulator, bandit) or a --recipe")
    import torch

    from l2l_ros.meta.train import train

    torch.set_num_threads(args.threads)
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    cfg = train_config(args.family, args.policy, args.updates, args.num_envs, args.seed, env_kwargs,
                       arms=args.arms, horizons=args.horizons, lr=args.lr, ent_coef=args.ent_coef,
                       minibatches=args.minibatches, epochs=args.epochs, gamma=args.gamma,
                       gae_lambda=args.gae_lambda, reward_scale=args.reward_scale,
                       anneal_lr_after=args.anneal_lr_after, init_from=args.init_from,
                       teacher=args.teacher, teacher_mix_updates=args.teacher_mix_updates,
                       imitation_coef=args.imitation_coef,
                       teacher_soft=args.teacher_soft, teacher_index_tau=args.teacher_index_tau,
                       teacher_mirror_goals=args.teacher_mirror_goals,
                       expected_reward=args.expected_reward, action_std=args.action_std,
                       potential_shaping=args.potential_shaping,
                       policy_config=json.loads(args.policy_config) if args.policy_config else None)
    done = _with_ctrl_c(lambda stop: train(cfg, Path(args.out), command=_command_line(argv), should_stop=stop,
                                             device=args.device),
                        f"the same command resumes {args.out} from its last checkpoint, if any "
                        f"(one every {cfg.checkpoint_every} updates)")
    if done is None:
        return 130
    path, stopped = done
    from l2l_ros.meta.distributed import setup, shutdown

    writer = setup().writer
    shutdown()
    if not writer:  # torchrun: rank 0 reports, plots and evaluates
        # The other ranks leave without interpreter finalization: a worker's exit there
        # aborted now and then ("terminate called without an active exception", 1 run in
        # about 10), failing the whole torchrun after its training had finished.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if stopped:
        from l2l_ros.meta.checkpoint import checkpoint_paths

        saved = json.loads(checkpoint_paths(path)[1].read_text())["evaluation"]["updates"]
        print(f"stopped: {args.out} holds update {saved}; the same command resumes from there", file=sys.stderr)
        return 130
    print(f"checkpoint: {path}")
    from l2l_ros.report import plot_learning_curve

    curve = plot_learning_curve(Path(args.out) / "train_log.jsonl", Path(args.out) / "learning_curve.png",
                                f"{args.policy} on {args.family} ({Path(args.out).name})")
    print(f"learning curve: {curve}")
    if args.family == "imaze" and args.eval_tasks > 0:
        from l2l_ros.evaluation import evaluate_imaze_checkpoint

        figures = evaluate_imaze_checkpoint(str(path), args.eval_tasks, seed=args.seed + 1000)
        _attach_evaluation(path, figures)
        print(json.dumps(figures, indent=2))
    return 0


def cmd_train_recipe(args, argv) -> int:
    import torch

    from l2l_ros.recipes import load_recipe, run_recipe

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    if args.family and args.family != recipe.family:
        raise ValueError(f"recipe {recipe.name} trains on {recipe.family}, not {args.family}")
    done = _with_ctrl_c(lambda stop: run_recipe(recipe, Path(args.out), args.scale, should_stop=stop,
                                                command=_command_line(argv), device=args.device),
                        f"the same command resumes {args.out}")
    if done is None:
        return 130
    summary, _ = done
    if summary is None:
        print(f"stopped: the same command resumes {args.out}", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    print(f"recipe {recipe.name}: time to criterion {summary['time_to_criterion_s'] / 60:.1f} min of updates, "
          f"targets met: {summary['targets_met']}; {Path(args.out) / 'evaluation.json'}")
    return 0


def _with_ctrl_c(run, resume_hint: str):
    """``run(should_stop)`` where the first Ctrl-C makes ``should_stop()`` true (finish the
    update, save) and a second one interrupts at once. Returns ``(result, stopped)``, or
    None after a second Ctrl-C (``resume_hint`` printed)."""
    previous_handler = signal.getsignal(signal.SIGINT)
    stop_requested = _stop_on_first_ctrl_c()
    try:
        return run(stop_requested.is_set), stop_requested.is_set()
    except KeyboardInterrupt:  # the second Ctrl-C: the last periodic checkpoint stays
        print(f"\ninterrupted mid-update: {resume_hint}", file=sys.stderr)
        return None
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def _stop_on_first_ctrl_c() -> threading.Event:
    """The first Ctrl-C asks the trainer to stop after the current update and save it
    (``train``'s ``should_stop``, as the trainer node does); a second one interrupts at once."""
    requested = threading.Event()

    def request_stop(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping after this update (Ctrl-C again to stop now)", file=sys.stderr)

    signal.signal(signal.SIGINT, request_stop)
    return requested


def _attach_evaluation(path: Path, figures: dict) -> None:
    """Store evaluation figures in the checkpoint (the weights embed the JSON, so both are
    written again; the tensors are unchanged)."""
    from l2l_ros.meta.checkpoint import read_metadata, rewrite_metadata

    evaluation = read_metadata(path).get("evaluation") or {}
    rewrite_metadata(path, {"evaluation": {**evaluation, **figures}})


# --- eval ----------------------------------------------------------------------------
# Bundled models `l2l eval imaze` compares with the spiking one by default.
BUNDLED_IMAZE_COMPARE = {"lstm": "models/imaze_lstm/policy.json",
                         "lstm_imitation": "models/imaze_lstm_imitation/policy.json"}


def cmd_export_nir(args, argv) -> int:
    from l2l_ros.meta.checkpoint import load_checkpoint
    from l2l_ros.snn.nir_export import export_lsnn, import_lsnn

    policy, meta = load_checkpoint(args.model)
    if meta.get("policy_kind") != "lsnn":
        raise ValueError(f"{args.model} is a {meta.get('policy_kind')} model: NIR describes spiking networks")
    path = Path(args.dir) / "network.nir"
    graph = export_lsnn(policy, path, {"source": str(args.model), "env_id": meta.get("env_id")})
    import_lsnn(path)  # it reads back
    cfg = policy.config
    print(f"{path}: NIR graph {' -> '.join(graph.nodes)}; {cfg.n_lif} LIF + {cfg.n_alif} ALIF neurons, "
          f"{cfg.ticks_per_step} tick(s) per control step")
    if cfg.n_alif:
        print(f"note: NIR has no adaptive-threshold node: the {cfg.n_alif} ALIF neurons' adaptation (beta, tau_a) "
              "is in the neurons node's l2l_ros metadata; a NIR simulator that ignores it runs them as LIF")
    print("the input is the encoded observation (population coding and input products, LSNNPolicy."
          "encode_inputs, with evidence traces from evidence_sequence where evidence_tau > 0); "
          "reset by subtraction and refractory ticks are in the metadata")
    return 0


def _parse_family(text: str, family_class):
    """``--family``: a preset name or a JSON object of the family's fields, checked here so
    an unknown preset, field or range is one argparse error (``tasks.family_spec``)."""
    try:
        spec = json.loads(text) if text.strip().startswith("{") else text
        family_class.from_spec(spec)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return spec


def _arm_family(text: str):
    from l2l_ros.tasks.manipulator import ArmFamily

    return _parse_family(text, ArmFamily)


def _imaze_family(text: str):
    from l2l_ros.tasks.imaze_family import IMazeFamily

    return _parse_family(text, IMazeFamily)


REALITY_GAP_KEYS = ("integrator", "physics_timestep", "substep_jitter", "extra_q_noise", "extra_qd_noise")


def _reality_gap(text: str) -> dict:
    """``--env-kwargs`` of the arm: a JSON object of ``REALITY_GAP_KEYS``, checked by building the env."""
    try:
        kwargs = json.loads(text)
        if not isinstance(kwargs, dict) or set(kwargs) - set(REALITY_GAP_KEYS):
            raise ValueError(f"expected a JSON object of {', '.join(REALITY_GAP_KEYS)}")
        from l2l_ros.tasks.manipulator import ArmSim

        ArmSim(**kwargs)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return kwargs


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def cmd_eval_manipulator(args, argv) -> int:
    import torch

    from l2l_ros.evaluation import (ARM_CONTROLLERS, RandomArmAgent, arm_controller, run_manipulator_tasks,
                                    summarize_manipulator, tune_arm_gains, versus_oracle)
    from l2l_ros.graphs import default_arm_model
    from l2l_ros.policy_runtime import load_runtime, untrained_runtime

    env_kwargs = {**args.env_kwargs, "family": args.family, "hidden_goal": args.hidden_goal}
    if (args.plots or args.video) and not 0 <= args.video_task < args.tasks:
        raise ValueError(f"--video-task {args.video_task} is not one of the {args.tasks} tasks (0..{args.tasks - 1})")
    if args.tune_gains:
        print(json.dumps(tune_arm_gains(args.tasks, args.seed, env_kwargs, progress=not args.json), indent=2))
        return 0
    agents: dict = {}
    runtimes: dict = {}
    for path in args.checkpoint or [default_arm_model()]:
        if path:
            runtime = load_runtime(path, "manipulator")
        else:
            torch.manual_seed(args.seed)
            runtime = untrained_runtime("manipulator")
        runtime.count_spikes()
        runtimes[path or "untrained"] = runtime
    agents.update(runtimes)
    agents["random"] = RandomArmAgent(args.seed)
    if not args.no_baselines:
        for name in ARM_CONTROLLERS:
            agents[name] = arm_controller(name, hidden_goal=args.hidden_goal)
    records = {name: run_manipulator_tasks(agent, args.tasks, args.seed, env_kwargs=env_kwargs,
                                           progress=None if args.json else name, keep_traces=bool(args.plots))
               for name, agent in agents.items()}
    policies = {name: summarize_manipulator(r) for name, r in records.items()}
    if "oracle" in policies:
        ref = policies["oracle"]
        for s in policies.values():
            s.update(versus_oracle(s, ref))
    doc: dict = {"tasks": args.tasks, "seed": args.seed, "env_kwargs": env_kwargs, "policies": policies,
                 "cost_per_control_step": {name: rt.cost() for name, rt in runtimes.items()}}
    if args.plots:
        from l2l_ros.evaluation import record_lsnn_task
        from l2l_ros.report import plot_arm_adaptation, plot_spike_raster

        out = Path(args.plots)
        name, runtime = next(iter(runtimes.items()))
        shown = {k: records[k] for k in (name, "oracle", "resolved_rate") if k in records}
        doc["plots"] = [str(plot_arm_adaptation(
            shown, {k: r[args.video_task]["distances"] for k, r in shown.items()}, out / "adaptation.png",
            f"{args.tasks} arm tasks of seed {args.seed}; right: task {args.video_task}"))]
        if hasattr(runtime.state, "b"):
            rec = record_lsnn_task(runtime, args.seed, args.video_task, "manipulator", env_kwargs)
            doc["plots"].append(str(plot_spike_raster(rec, out / "spike_raster.png", f"arm task {args.video_task}")))
    if args.video:
        from l2l_ros.tasks.manipulator import ManipulatorEnv
        from l2l_ros.video import record_task

        name, runtime = next(iter(runtimes.items()))
        doc["video"] = record_task(ManipulatorEnv(render_mode="rgb_array", **env_kwargs), runtime, args.seed,
                                   args.video_task, args.video)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{args.tasks} arm tasks of seed {args.seed}, family {json.dumps(args.family)}"
          f"{', hidden goal' if args.hidden_goal else ''}; reaches within 200 steps (10 s) per task")
    print(f"{'policy':<28} {'targets/task':>14} {'vs oracle':>9} {'1st reach':>9} {'later':>6} "
          f"{'final m':>7}  targets/task by latency 0..3 | by sign flips 0..3")
    for policy, s in policies.items():
        lat = " ".join(_fmt(s["by_latency"].get(str(k), {}).get("targets_per_task"), ".2f") for k in range(4))
        flips = " ".join(_fmt(s["by_sign_flips"].get(str(k), {}).get("targets_per_task"), ".2f") for k in range(4))
        print(f"{policy:<28} {s['targets_per_task']:>7.2f} ± {s['targets_per_task_sem']:<4.2f} "
              f"{_fmt(s.get('targets_vs_oracle'), '.2f'):>9} {_fmt(s['steps_to_first_reach']):>9} "
              f"{_fmt(s['steps_per_later_reach']):>6} {s['mean_final_distance_m']:>7.3f}  {lat} | {flips}")
    from l2l_ros.cost import cost_line

    for name, cost in doc["cost_per_control_step"].items():
        print(cost_line(name, cost))
    if args.video:
        print(f"video of task {args.video_task}: {doc['video']['path']} ({doc['video']['frames']} frames, "
              f"{doc['video']['trials_ended']} targets reached)")
    return 0


def cmd_eval(args, argv) -> int:
    from l2l_ros.evaluation import (RandomAgent, SearcherAgent, imaze_oracle_figures, record_lsnn_task,
                                    run_imaze_tasks)
    from l2l_ros.graphs import default_model_path
    from l2l_ros.policy_runtime import load_runtime
    from l2l_ros.resources import share_path
    from l2l_ros.report import (plot_learning_curve, plot_spike_raster, plot_trajectories, summarize,
                                summary_lines)
    from l2l_ros.tasks.encoding import IMAZE_ACTIONS

    import torch

    torch.set_num_threads(1)  # batch-1 policies, as the ROS node runs them: threads only contend
    checkpoint = args.checkpoint or default_model_path()
    keep = bool(args.plots)
    runtime = load_runtime(checkpoint, "imaze")
    env_kwargs = {} if args.family == "fixed" else {"family": args.family}
    # The checkpoint's row: "spiking" for an LSNN (as the bundled model), else "checkpoint".
    main = "spiking" if runtime.metadata.get("policy_kind") == "lsnn" else "checkpoint"
    agents = {main: runtime}
    compare = dict(spec.partition("=")[::2] for spec in args.compare)
    if not args.no_bundled:
        bundled = {name: share_path(*path.split("/")) for name, path in BUNDLED_IMAZE_COMPARE.items()}
        compare = {**{name: str(path) for name, path in bundled.items() if path.exists()}, **compare}
    for name, path in compare.items():
        if not name or not path:
            print("--compare wants NAME=PATH", file=sys.stderr)
            return 2
        agents[name] = load_runtime(path, "imaze")
    agents["searcher"] = SearcherAgent()  # the scripted teacher of the imitation-trained models
    agents["random"] = RandomAgent(len(IMAZE_ACTIONS), args.seed)
    results, records_by_agent, costs = {}, {}, {}
    for name, agent in agents.items():
        if hasattr(agent, "count_spikes"):
            agent.count_spikes()
        recs = run_imaze_tasks(agent, args.tasks, args.seed, not args.stochastic, keep_paths=keep,
                               progress=None if args.json else name, env_kwargs=env_kwargs)
        records_by_agent[name] = recs
        results[name] = summarize(recs)
        if hasattr(agent, "cost"):
            costs[name] = agent.cost()
    doc = {"checkpoint": checkpoint, "tasks": args.tasks, "seed": args.seed, "family": args.family,
           "policies": results, "oracle": imaze_oracle_figures(), "cost_per_control_step": costs}
    if args.plots:
        from l2l_ros.evaluation import task_mazes

        out = Path(args.plots)
        first = [r for r in records_by_agent[main] if r["task"] < 4]
        doc["plots"] = [str(plot_trajectories(first, task_mazes(range(4), args.seed, env_kwargs),
                                              out / "trajectories.png",
                                              f"{runtime.metadata.get('policy_kind')} policy "
                                              f"({Path(checkpoint).parent.name}), offline evaluation"))]
        if hasattr(runtime.state, "b"):
            # The first task in which the policy reaches the goal at least once, else task 0.
            hit = sorted({r["task"] for r in records_by_agent[main] if r["success"]})
            task = hit[0] if hit else 0
            rec = record_lsnn_task(runtime, args.seed, task, env_kwargs=env_kwargs)
            doc["plots"].append(str(plot_spike_raster(rec, out / "spike_raster.png",
                                                      f"task {task}")))
        log = Path(checkpoint).with_name("train_log.jsonl")
        if log.exists():
            doc["plots"].append(str(plot_learning_curve(log, out / "learning_curve.png",
                                                        f"training of {Path(checkpoint).parent.name}")))
    if args.video:
        from l2l_ros.tasks.imaze import IMazeEnv
        from l2l_ros.video import record_task

        doc["video"] = record_task(IMazeEnv(render_mode="rgb_array", **env_kwargs), runtime, args.seed, args.video_task,
                                   args.video, not args.stochastic)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name, s in results.items():
            print(summary_lines(s, name))
        if args.video:
            print(f"video of task {args.video_task}: {doc['video']['path']} ({doc['video']['frames']} frames, "
                  f"{doc['video']['trials_ended']} goals reached)")
        from l2l_ros.cost import cost_line

        for name, c in costs.items():
            print(cost_line(name, c))
    return 0



# --- run -----------------------------------------------------------------------------
def cmd_run(args, argv) -> int:
    from l2l_ros.graphs import GRAPHS
    from l2l_ros.runner import start_graph

    if args.graph not in GRAPHS:
        print(f"unknown graph {args.graph!r}; known: {', '.join(GRAPHS)}", file=sys.stderr)
        return 2
    graph = GRAPHS[args.graph]
    values = dict(kv.split("=", 1) for kv in args.set)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.graph in ("navigation", "manipulator"):
        results = out / "trials.jsonl"
        results.unlink(missing_ok=True)
        values.setdefault("tasks", str(args.tasks))
        values.setdefault("results_file", str(results))
    print(f"l2l run {args.graph}: {graph.description}")
    t0 = time.monotonic()
    running = start_graph(args.graph, values, out / "logs")
    env_note = (f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '(per run)')}, "
                f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')}")
    print(f"started {len(running.processes)} nodes as rclpy processes ({env_note}); logs in {out / 'logs'}")
    try:
        ender, code = running.wait(args.timeout)
    except (RuntimeError, TimeoutError) as exc:  # a node died or the run overran: say which, once
        print(f"l2l run {args.graph}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        running.stop()
    wall = time.monotonic() - t0
    if code != 0:
        print(f"{ender} exited with {code}; see {out / 'logs'}", file=sys.stderr)
        return code
    if args.graph == "navigation":
        return _report_navigation(out, values, wall)
    if args.graph == "manipulator":
        return _report_manipulator(out, values, wall)
    return 0


def _report_manipulator(out: Path, values: dict, wall: float) -> int:
    """Per task of the run through ROS: targets reached, steps to each, the final distance."""
    import numpy as np

    recs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    print()
    print("task  targets  steps to each target (first from the task start)         final distance")
    reached = []
    for task in sorted({r["task"] for r in recs}):
        trials = [r for r in recs if r["task"] == task]
        steps = [r["steps"] for r in trials if r["success"]]
        reached.append(len(steps))
        shown = " ".join(str(s) for s in steps[:12]) + (" ..." if len(steps) > 12 else "")
        print(f"{task:>4}  {len(steps):>7}  {shown:<55}  {trials[-1]['distance']:.3f} m")
    firsts = [r["steps"] for r in recs if r["success"] and r["trial"] == 0]
    laters = [r["steps"] for r in recs if r["success"] and r["trial"] > 0]
    print()
    print(f"this run (through ROS 2): {np.mean(reached):.2f} targets per task over {len(reached)} tasks; "
          f"first reach {np.mean(firsts) if firsts else float('nan'):.1f} steps, later reaches "
          f"{np.mean(laters) if laters else float('nan'):.1f} steps (0.05 s each); wall time {wall:.0f} s")
    from l2l_ros.graphs import default_arm_model

    checkpoint = values.get("checkpoint") or default_arm_model()
    print(f"model: {checkpoint or 'an untrained network (seeded)'}; the same tasks offline: "
          f"l2l eval manipulator --tasks {len(reached)} --seed {values.get('seed', 0)}"
          + (f" --checkpoint {checkpoint}" if checkpoint else ""))
    return 0


def _report_navigation(out: Path, values: dict, wall: float) -> int:
    from l2l_ros.graphs import default_model_path
    from l2l_ros.meta.checkpoint import read_metadata
    from l2l_ros.report import plot_trajectories, summarize, summary_lines, trial_table
    from l2l_ros.tasks.imaze import IMazeEnv

    recs = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    checkpoint = values.get("checkpoint") or default_model_path()
    meta = read_metadata(checkpoint)
    print()
    print(trial_table(recs))
    print()
    print(summary_lines(summarize(recs), "this run (through ROS 2)"))
    family = values.get("family", "fixed")
    if family == "fixed":
        sim = IMazeEnv().sim
        png = plot_trajectories(recs, sim.model, out / "trajectories.png",
                                f"I-maze through ROS 2: {Path(checkpoint).parent.name}", sim.geometry)
    else:  # each task its own maze, side by side at one scale
        from l2l_ros.evaluation import task_mazes

        spec = json.loads(family) if family.strip().startswith("{") else family
        mazes = task_mazes(sorted({r["task"] for r in recs}), int(values.get("seed", 0)), {"family": spec})
        png = plot_trajectories(recs, mazes, out / "trajectories.png",
                                f"I-maze family {family} through ROS 2: {Path(checkpoint).parent.name}")
    print(f"trajectories: {png}")
    print(f"wall time {wall:.0f} s")
    print()
    print(f"model: {checkpoint}")
    print(f"  trained with: {meta.get('command')} (seed {meta.get('seed')}, commit {meta.get('git_commit')})")
    for line in offline_evaluation_lines(checkpoint, meta):
        print(line)
    return 0


def offline_evaluation_lines(checkpoint: str, meta: dict) -> list[str]:
    """The model's offline figures, so a short run through ROS is read beside them.

    A bundled model's ``evaluation.json`` (``l2l eval imaze --json``, 200 tasks) comes
    first, if it evaluated this model (its ``checkpoint`` is in this folder: an LSTM's
    folder holds the spiking model's evaluation beside it); otherwise the end-of-training
    evaluation in ``policy.json``, if the run had one."""
    from l2l_ros.report import summary_lines

    saved = Path(checkpoint).parent / "evaluation.json"
    if saved.is_file():
        try:
            ev = json.loads(saved.read_text())
            if Path(ev["checkpoint"]).parent.name == saved.parent.name:
                pols = ev["policies"]
                return ([f"  offline evaluation ({saved.name}: {ev['tasks']} tasks, seed {ev['seed']}):"]
                        + ["  " + summary_lines(pols[name], label)
                           for name, label in (("spiking", "model"), ("random", "random policy")) if name in pols])
        except (ValueError, KeyError, TypeError) as err:
            return [f"  offline evaluation: {saved} is unreadable ({err!r})"]
    ev = meta.get("evaluation") or {}
    if ev.get("model") and ev.get("random"):
        return [f"  offline evaluation on {ev['tasks']} held-out tasks (seed {ev['seed']}):",
                "  " + summary_lines(ev["model"], "model"),
                "  " + summary_lines(ev["random"], "random policy")]
    return []


# --- bench ---------------------------------------------------------------------------
def cmd_bench(args, argv) -> int:
    from l2l_ros import bench

    if args.what == "reliability":
        return _bench_reliability(args, argv)
    seconds = args.seconds if args.seconds is not None else (10.0 if args.what == "sim" else 600.0)
    result = bench.run(args.what, args.task, seconds, args.nproc)
    out = Path(args.out) / f"{args.what}_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["command"] = _command_line(argv)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


def _bench_reliability(args, argv) -> int:
    from l2l_ros.meta.kill_test import trainer_kills
    from l2l_ros.reliability import run_reliability

    report = run_reliability(args.scale, Path(args.out), seed=args.seed, trainer_kills=trainer_kills)
    report["command"] = _command_line(argv)
    path = Path(args.out) / f"reliability_{args.scale}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}; {'PASSED' if report['passed'] else 'FAILED'}")
    return 0 if report["passed"] else 1


def _check_video(path: str) -> str:
    """argparse type: a video file name the writer knows (checked before any work is done)."""
    from l2l_ros.video import SUFFIXES

    if path and not path.lower().endswith(SUFFIXES):  # '' (the default): no video
        raise argparse.ArgumentTypeError(f"{path!r} must end in {' or '.join(SUFFIXES)}")
    return path


def build_parser() -> argparse.ArgumentParser:
    from l2l_ros.bandit_eval import add_bandit_eval_arguments, main_eval_bandit

    parser = argparse.ArgumentParser(prog="l2l", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("train", help="meta-train a policy on a task family (PPO or imitation, BPTT over whole tasks)")
    p.add_argument("family", nargs="?", choices=sorted(FAMILIES),
                   help="task family (not with --recipe, whose file names it)")
    p.add_argument("--recipe", default="", metavar="NAME|FILE.toml",
                   help="run a whole recipe (every stage, teachers included, then its evaluation); "
                        "the other training options do not apply")
    p.add_argument("--list-recipes", action="store_true", help="list the bundled recipes and exit")
    p.add_argument("--scale", choices=SCALES, default="full",
                   help="with --recipe: smoke runs every stage for a few updates on few tasks (a check, "
                        "not a model)")
    p.add_argument("--policy", choices=("lsnn", "lstm", "mlp"), default="lsnn",
                   help="network: lsnn (spiking, LIF + ALIF), lstm (the non-spiking baseline) or mlp "
                        "(memoryless: the domain-randomization baseline)")
    p.add_argument("--updates", type=positive_int, default=200, help="outer-loop updates (each one task per env)")
    p.add_argument("--num-envs", type=positive_int, default=16, help="tasks collected in parallel per update")
    p.add_argument("--seed", type=int, default=0, help="seed of the tasks, the initial weights and sampling")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.001)")
    p.add_argument("--ent-coef", type=float, default=None, help="PPO entropy bonus (default 0.01)")
    p.add_argument("--minibatches", type=positive_int, default=None, help="minibatches of whole tasks per epoch (default 4)")
    p.add_argument("--epochs", type=positive_int, default=None, help="passes over each update's tasks (default 4)")
    p.add_argument("--gamma", type=float, default=None, help="discount (default 0.99; bandit 0.995)")
    p.add_argument("--anneal-lr-after", type=int, default=None, metavar="U",
                   help="decay the learning rate linearly to 0 from update U to the last")
    p.add_argument("--gae-lambda", type=float, default=None, help="GAE lambda (default 0.95)")
    p.add_argument("--reward-scale", type=float, default=None,
                   help="reward scale of the value/advantage targets (bandit default 0.05)")
    p.add_argument("--action-std", type=float, default=None, metavar="STD",
                   help="continuous actions (the arm): a fixed exploration std instead of a learnt one")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a fresh run from this saved policy's weights (fine-tuning, new optimizer)")
    p.add_argument("--teacher", default=None, metavar="gittins|searcher|arm-oracle|CHECKPOINT",
                   help="learn by imitating this teacher on the policy's own states (DAgger) instead of PPO: "
                        "gittins (the finite-horizon Gittins index policy, bandit), searcher (a scripted "
                        "I-maze searcher that knows the map, not the goal), arm-oracle (the arm's oracle controller, "
                        "told each task's payload, damping, gain and latency, finding each joint's calibration "
                        "by acting; continuous actions: with --imitation-coef, or alone with --action-std) or "
                        "a saved policy "
                        "(e.g. models/imaze_lstm/policy.json: policy distillation)")
    p.add_argument("--teacher-mix-updates", type=int, default=None, metavar="U",
                   help="with --teacher: the teacher's actions are executed with a probability falling "
                        "from 1 to 0 over the first U updates (default 0: always the policy's own)")
    p.add_argument("--imitation-coef", type=float, default=None, metavar="C",
                   help="with --teacher: train by PPO (the policy's own samples drive) and add C times the "
                        "imitation loss (minus the log-probability of the teacher's actions) to its loss, "
                        "instead of pure imitation")
    p.add_argument("--teacher-soft", action="store_true",
                   help="with --teacher CHECKPOINT: the target is the teacher's whole action distribution "
                        "(cross-entropy to it) instead of its greedy action, and plain imitation executes "
                        "the student's samples (for policies scored by their samples, as the bandit models); "
                        "with --teacher gittins: softmax(index / 0.01) instead of the tied-best arms")
    p.add_argument("--teacher-mirror-goals", type=int, nargs="+", default=None, metavar="ALCOVE",
                   help="with --teacher CHECKPOINT (I-maze): in the later trials of tasks whose goal is one of "
                        "these alcoves, the approach to the goal's crossbar is taught by the teacher playing the "
                        "maze's mirror image across the stem (alcoves 0<->1, 2<->3, turns swapped), where it "
                        "turns the right way")
    p.add_argument("--teacher-index-tau", type=float, default=None, metavar="TAU",
                   help="with --teacher gittins: the target is the Gittins index itself, as logits (each "
                        "arm's index minus the best arm's, over TAU, floored at -8), learnt by squared "
                        "error; the policy's samples drive")
    p.add_argument("--expected-reward", action="store_true",
                   help="PPO, bandits: PPO's advantages and value targets use the pulled arm's probability "
                        "minus the task's mean probability instead of the sampled 0/1 reward (training "
                        "only; the same expected gradient, less noise); the policy still sees the draw")
    p.add_argument("--potential-shaping", type=float, default=0.0, metavar="C",
                   help="PPO, I-maze: add C * (d(s) - gamma * d(s')) to each step's reward for the advantages, "
                        "d the oracle's fewest control periods into the goal alcove, each trial an episode (training "
                        "only; within a trial it moves no expected return and credits the turn at once); 0: off")
    p.add_argument("--arms", type=positive_int, default=5, help="bandit: number of arms k")
    p.add_argument("--horizons", default="",
                   help="bandit: comma-separated pulls per task, one drawn per update (default 10,100,500)")
    p.add_argument("--env-kwargs", default="", help="JSON dict passed to the env")
    p.add_argument("--policy-config", default="", metavar="JSON",
                   help='network constants, e.g. \'{"tau_m": 1.0}\' (LSNNConfig / LSTMConfig fields)')
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu",
                   help="where the network trains: cpu, cuda or cuda:N (torchrun: each rank its LOCAL_RANK GPU); "
                        "the envs and teachers run on the CPU, checkpoints are written from CPU copies")
    p.add_argument("--eval-tasks", type=int, default=50,
                   help="held-out tasks evaluated after training (figures go into the checkpoint)")
    p.add_argument("--out", default="", help="run folder: checkpoint, log (resumes if present); with "
                   "--recipe, one subfolder per stage and evaluation.json")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate checkpoints beside baselines")
    fam = p.add_subparsers(dest="family", required=True)
    q = fam.add_parser("imaze", help="spiking policy vs random on held-out I-maze tasks")
    q.add_argument("--checkpoint", default="", help="policy .json to evaluate (default: the bundled spiking model)")
    q.add_argument("--tasks", type=positive_int, default=50, help="held-out tasks (goal alcoves) to play")
    q.add_argument("--seed", type=int, default=12345, help="seed of the tasks (the model cards use 777)")
    q.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                   help="another checkpoint to evaluate beside it (e.g. lstm=runs/x/policy.json)")
    q.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    q.add_argument("--no-bundled", action="store_true",
                   help="leave out the bundled LSTM models (models/imaze_lstm, models/imaze_lstm_imitation) "
                        "that are compared by default")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.add_argument("--plots", default="", help="folder for PNGs (trajectories, steps per trial)")
    q.add_argument("--video", default="", type=_check_video, metavar="FILE.mp4|FILE.gif",
                   help="also render one whole task of the checkpoint (every trial, the goal alcove in yellow) "
                        "with MuJoCo's offscreen renderer")
    q.add_argument("--video-task", type=int, default=0, metavar="N", help="which task of --seed the video shows")
    q.add_argument("--family", type=_imaze_family, default="fixed", metavar="PRESET|JSON",
                   help="the task family: fixed (the default maze, perfect sensors: the bundled model's), "
                        "sim2real (mazes of many sizes, lidar noise and dropouts, drifting odometry, friction, "
                        "mass, latency 0-2), noise_x2 (sim2real with every sensing and actuation range doubled) "
                        "or large_mazes (geometry past sim2real's); or a JSON object of ranges over a preset, "
                        "e.g. '{\"preset\": \"sim2real\", \"latency\": [0, 0]}' (fields: stem_half_length, "
                        "crossbar_half_length, corridor_width, alcove_depth, lidar_noise, beam_dropout, "
                        "odom_scale_error, gyro_bias, friction, mass, latency; docs/imaze_family.md)")
    q.set_defaults(func=cmd_eval)
    q = fam.add_parser("manipulator", help="checkpoints vs the classical controllers (fixed-gain resolved rate, PI, "
                                           "an oracle given the task's calibration, the same oracle finding each "
                                           "joint's calibration by acting) and random on arm tasks")
    q.add_argument("--checkpoint", action="append", default=[], metavar="POLICY.json",
                   help="policy .json for the arm, repeatable (default: the bundled arm model, as "
                        "l2l run manipulator runs it; an untrained, seeded LSNN where there is none)")
    q.add_argument("--tasks", type=positive_int, default=20, help="held-out tasks (arm dynamics and targets) to play")
    q.add_argument("--seed", type=int, default=0, help="seed of the tasks, numbered as manipulator_sim numbers them")
    q.add_argument("--family", type=_arm_family, default="sim2real", metavar="PRESET|JSON",
                   help="ranges of the per-task dynamics: sim2real (calibration with sign flips, payload, "
                        "damping, servo gain, latency, noise), nominal_calibration (no calibration error, "
                        "light payloads), out_of_range (every range widened), or a JSON object of "
                        "ArmFamily fields, e.g. '{\"preset\": \"sim2real\", \"flip_prob\": 0}'")
    q.add_argument("--hidden-goal", action="store_true",
                   help="the hidden-goal variant: the target is one of four marked spots, never observed; "
                        "only the reward says when the tool is there (the baselines search the spots)")
    q.add_argument("--env-kwargs", type=_reality_gap, default={}, metavar="JSON",
                   help="a reality gap for the sim-to-sim check, as manipulator_sim's parameters: "
                        "'{\"integrator\": \"rk4\", \"physics_timestep\": 0.0025, \"substep_jitter\": 2, "
                        "\"extra_q_noise\": 0.005, \"extra_qd_noise\": 0.05}'")
    q.add_argument("--no-baselines", action="store_true", help="leave out the classical controllers")
    q.add_argument("--plots", default="", metavar="DIR",
                   help="folder for PNGs: steps per successive reach and the distance over one task "
                        "(--video-task) for the first checkpoint and the controllers; its spike raster")
    q.add_argument("--tune-gains", action="store_true",
                   help="instead of evaluating, score the classical controllers' gain grid on --tasks of "
                        "--seed (the bundled gains: 100 tasks of seed 7) and print it as JSON")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.add_argument("--video", default="", type=_check_video, metavar="FILE.mp4|FILE.gif",
                   help="also render one whole task of the checkpoint (the target in red) offscreen")
    q.add_argument("--video-task", type=int, default=0, metavar="N",
                   help="which task of --seed the video (and the plots' single-task panels) show")
    q.set_defaults(func=cmd_eval_manipulator)
    q = fam.add_parser("bandit", help="RL² Table 1: checkpoints vs Gittins, UCB1, Thompson, greedy, random")
    add_bandit_eval_arguments(q)
    q.set_defaults(func=lambda args, argv: main_eval_bandit(args))

    p = sub.add_parser("export", help="write a model in another format")
    fmt = p.add_subparsers(dest="format", required=True)
    q = fmt.add_parser("nir", help="a spiking model as a NIR graph (Neuromorphic Intermediate Representation)")
    q.add_argument("model", help="checkpoint .json of a spiking (lsnn) model, e.g. models/bandit_k5_lsnn/policy.json")
    q.add_argument("dir", help="folder for network.nir")
    q.set_defaults(func=cmd_export_nir)

    p = sub.add_parser("run", help="run a node graph (as a launch file would) on DDS")
    p.add_argument("graph", help="navigation, manipulator or training (l2l_ros/graphs.py; the launch files' graphs)")
    p.add_argument("--tasks", type=positive_int, default=3, help="tasks the simulator runs before the graph ends")
    p.add_argument("--set", action="append", default=[], metavar="ARG=VALUE",
                   help="a launch argument of the graph")
    p.add_argument("--out", default="out/run", help="folder for the nodes' logs, trials.jsonl and the pictures")
    p.add_argument("--timeout", type=float, default=540.0, help="seconds before the run is stopped as overdue")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="throughput benchmarks, written to benchmarks/")
    p.add_argument("what", choices=("sim", "train", "reliability"),
                   help="sim: physics steps/s; train: trainer throughput and time to criterion; "
                        "reliability: the nodes under malformed input, bad checkpoints, stale sensors and "
                        "trainer kills (issue 32's figures)")
    p.add_argument("--task", choices=("imaze", "manipulator", "bandit"), default="imaze",
                   help="sim: imaze or manipulator; train: imaze or bandit")
    p.add_argument("--scale", choices=("small", "full"), default="full",
                   help="reliability: full (10,000 messages per topic, 30 checkpoints, 20 trainer kills) or "
                        "small (what the tests run)")
    p.add_argument("--seed", type=int, default=0, help="reliability: seed of the fuzzer")
    p.add_argument("--seconds", type=float, default=None,
                   help="sim: measuring time (default 10); train: training budget per policy "
                        "for the time-to-6.6 run (default 600)")
    p.add_argument("--nproc", type=int, default=1,
                   help="train --task imaze: also time torchrun with this many ranks against one process")
    p.add_argument("--out", default="benchmarks", help="folder the JSON result is written to")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors a user can fix (a bad path, checkpoint, JSON or value) end in one line and
    exit code 2; ``L2L_TRACEBACK=1`` shows the whole trace."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, argv) or 0)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        if os.environ.get("L2L_TRACEBACK"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"l2l {argv[0] if argv else ''}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
