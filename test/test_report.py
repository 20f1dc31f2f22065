"""The I-maze summary figures from hand-made trial records, and the run's closing lines."""
import json

import pytest

from l2l_ros.report import summarize, summary_lines


def _trial(task, trial, steps, success, oracle=49):
    return {"task": task, "trial": trial, "steps": steps, "success": success, "route_steps": oracle}


def test_summary_counts_trials_cut_by_the_budget_apart():
    recs = [
        _trial(0, 0, 100, True), _trial(0, 1, 50, True),
        _trial(0, 2, 30, False),   # budget ran out 30 steps into a later trial: cut
        _trial(1, 0, 314, False),  # never found the goal: a failure, never cut
        _trial(2, 0, 150, True),
        _trial(2, 1, 164, False),  # wandered > 2 x the oracle path: a failure
    ]
    s = summarize(recs)
    assert (s["tasks"], s["trials"], s["cut_trials"]) == (3, 6, 1)
    assert s["success_rate"] == pytest.approx(3 / 6)
    assert s["success_rate_uncut"] == pytest.approx(3 / 5)
    assert s["goals_per_task"] == pytest.approx(1.0)
    assert s["trial1_mean_steps"] == pytest.approx(125.0)
    assert s["later_mean_steps"] == pytest.approx(50.0) and s["later_sem"] is None
    assert "success 50% (60% without the 1 trial the budget cut)" in summary_lines(s, "x")


def test_summary_of_a_policy_that_never_reaches_the_goal():
    s = summarize([_trial(t, 0, 314, False) for t in range(4)])
    assert s["success_rate"] == 0.0 and s["success_rate_uncut"] == 0.0
    assert s["trial1_mean_steps"] is None and s["later_mean_steps"] is None


def test_per_goal_figures_show_a_search_that_skips_alcoves():
    recs = [
        {**_trial(0, 0, 80, True), "goal": 1}, {**_trial(0, 1, 30, True), "goal": 1},
        {**_trial(0, 2, 40, True), "goal": 1},
        {**_trial(1, 0, 314, False), "goal": 2},  # the favoured-alcove habit finds nothing here
        {**_trial(2, 0, 120, True), "goal": 0}, {**_trial(2, 1, 194, False), "goal": 0},
    ]
    s = summarize(recs)
    g = s["per_goal"]
    assert sorted(g) == ["0", "1", "2"]
    assert g["1"]["goals_per_task"] == 3.0 and g["1"]["later_mean_steps"] == pytest.approx(35.0)
    assert g["2"]["goals_per_task"] == 0.0 and g["2"]["trial1_success"] == 0.0
    assert g["2"]["later_mean_steps"] is None and g["2"]["later_successes"] == 0
    assert g["0"]["trial1_success"] == 1.0 and g["0"]["later_successes"] == 0
    text = summary_lines(s, "x")
    assert "goal alcove 2: 1 task, 0.00 goals/task, trial 1 found it in 0%, no later trial reached it" in text
    assert "goal alcove 1: 1 task, 3.00 goals/task, trial 1 found it in 100%, later trials 35.0 steps" in text
    assert "per_goal" not in summarize([_trial(0, 0, 80, True)])  # records without goals


def test_learning_curve_splits_goals_by_alcove(tmp_path):
    """A run that stops finding alcove 2 shows it in the per-alcove series (and panel)."""
    import json

    from l2l_ros.report import goals_by_alcove, plot_learning_curve

    rows = []
    for u in range(1, 41):
        by_goal = {"0": 2.0, "1": 1.0 + u / 40}
        if u % 2:  # alcove 2 is drawn every other update only
            by_goal["2"] = 1.0 if u <= 20 else 0.0
        rows.append({"update": u, "mean_return": 1.0, "mean_trial_ends": 1.0, "trial_ends_by_goal": by_goal})
    series = goals_by_alcove(rows, 5)
    assert set(series) == {"0", "1", "2"}
    x2, y2 = series["2"]
    assert x2[0] == 9 and x2[-1] == 39  # the 5th update that drew alcove 2, and its last
    assert y2[0] == 1.0 and y2[-1] == 0.0
    assert series["0"][1] == pytest.approx([2.0] * 36) and series["1"][1][-1] == pytest.approx(1.0 + 38 / 40)
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with_panel = plot_learning_curve(log, tmp_path / "curve.png", "test")
    log.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "trial_ends_by_goal"}) + "\n" for r in rows))
    without = plot_learning_curve(log, tmp_path / "plain.png", "test")
    from PIL import Image

    assert Image.open(with_panel).size[1] > Image.open(without).size[1]  # the extra panel


def _summary(goals: float) -> dict:
    return {"tasks": 2, "trials": 3, "success_rate": 0.5, "goals_per_task": goals, "trial1_mean_steps": 100.0,
            "trial1_sem": 5.0, "later_mean_steps": 50.0, "later_sem": 1.0, "oracle_path_steps": 49.0}


def test_run_footer_reads_the_models_own_evaluation_json_only(tmp_path):
    """`l2l run navigation` ends with the offline figures of the model it drove, not of a neighbour."""
    from l2l_ros.cli import offline_evaluation_lines

    model = tmp_path / "imaze_model"
    model.mkdir()
    ckpt = str(model / "policy.json")
    ev = {"checkpoint": "/elsewhere/imaze_model/policy.json", "tasks": 200, "seed": 777,
          "policies": {"spiking": _summary(3.56), "random": _summary(0.01)}}
    (model / "evaluation.json").write_text(json.dumps(ev))
    lines = offline_evaluation_lines(ckpt, {})
    assert "200 tasks, seed 777" in lines[0]
    assert "goals/task 3.56" in lines[1] and lines[2].strip().startswith("random policy")

    # An LSTM's folder holds the evaluation of the spiking model beside it: not this model's figures.
    ev["checkpoint"] = "/elsewhere/imaze_lsnn/policy.json"
    (model / "evaluation.json").write_text(json.dumps(ev))
    assert offline_evaluation_lines(ckpt, {}) == []
    trained = {"evaluation": {"tasks": 50, "seed": 1003, "model": _summary(2.0), "random": _summary(0.0)}}
    assert "goals/task 2.00" in offline_evaluation_lines(ckpt, trained)[1]

    (model / "evaluation.json").write_text("{not json")
    assert "unreadable" in offline_evaluation_lines(ckpt, trained)[0]
