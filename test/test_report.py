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
