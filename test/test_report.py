"""The I-maze summary figures from hand-made trial records."""
import pytest

from l2l_ros.report import summarize, summary_lines


def _trial(task, trial, steps, success, oracle=49):
    return {"task": task, "trial": trial, "steps": steps, "success": success, "oracle_path_steps": oracle}


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
