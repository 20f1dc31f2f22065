"""Recipes (issue 33): every bundled model's chain as data, runnable end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from l2l_ros.cli import main
from l2l_ros.meta.config import TrainConfig
from l2l_ros.recipes import RecipeError, list_recipes, load_recipe, recipe_dir, run_recipe, stage_config

RECIPES = sorted(list_recipes())


def test_the_comparison_tables_models_have_recipes_and_every_recipe_file_is_listed():
    models = {p.parent.name for p in Path("models").glob("*/policy.json")}
    assert set(RECIPES) == {p.stem for p in recipe_dir().glob("*.toml")}
    # The shipped models of the comparison tables; the superseded ones need no recipe.
    assert {"imaze_lsnn", "imaze_lstm", "bandit_k10_lsnn", "bandit_k10_lstm", "bandit_k5_lsnn",
            "bandit_k5_lstm", "arm_lsnn", "arm_lstm"} <= set(RECIPES) <= models
    assert {n for n in RECIPES if n.endswith("_lsnn") and not _taught_by_a_network(n)} == {"arm_lsnn"}


@pytest.mark.parametrize("name", RECIPES)
def test_the_recipes_last_stage_is_the_bundled_models_training(name):
    """The final stage's settings are those in the bundled model's policy.json; only the
    paths of its teacher and start weights (other stages of the recipe), settings added
    to the trainer since (at their defaults) and switches removed since (off) differ."""
    recipe = load_recipe(name)
    cfg = stage_config(recipe, recipe.stage_settings()[-1], Path("/out")).to_dict()
    doc = json.loads(Path(f"models/{recipe.model}/policy.json").read_text())
    bundled = dict(doc["train_config"])
    at = doc["evaluation"]["updates"]  # the update the bundled weights are at
    if at != bundled["updates"]:
        # A checkpoint of a run that was stopped early (models/arm_lsnn: update 450 of 600):
        # the recipe trains to it, which gives the same weights only at a constant rate.
        assert bundled.get("anneal_lr_after") is None, "a stopped run with an lr schedule"
        bundled["updates"] = at
    for key in set(cfg) | set(bundled):
        if key not in cfg:  # a research switch removed from the trainer: the model had it off
            assert bundled[key] in (0, False, None), (key, bundled[key])
        elif key in ("teacher", "init_from") and isinstance(bundled.get(key), str) and bundled[key] not in ("gittins", "arm-oracle"):
            assert cfg[key].startswith("/out/"), (key, cfg[key])
        elif key not in bundled or bundled[key] is None:
            assert cfg[key] == getattr(TrainConfig(), key), key
        else:
            assert cfg[key] == bundled[key], (key, cfg[key], bundled[key])


def _taught_by_a_network(name: str) -> bool:
    """A spiking recipe whose teacher is a trained network (a stage named ``teacher``); the
    arm's is taught by the oracle controller (``arm-oracle``) and has none."""
    return name.endswith("_lsnn") and "teacher" in {s["name"] for s in load_recipe(name).stage_settings()}


@pytest.mark.parametrize("name", [n for n in RECIPES if _taught_by_a_network(n)])
def test_a_spiking_recipes_teacher_stage_is_the_teacher_recipe(name):
    recipe = load_recipe(name)
    teacher = load_recipe(name.replace("_lsnn", "_lstm"))
    stages = {s["name"]: s for s in recipe.stage_settings()}
    mine = stage_config(recipe, stages["teacher"], Path("/out")).to_dict()
    theirs = stage_config(teacher, teacher.stage_settings()[-1], Path("/out")).to_dict()
    assert {k: v for k, v in mine.items() if k != "init_from"} == {k: v for k, v in theirs.items() if k != "init_from"}


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_runs_at_smoke_scale_and_a_rerun_trains_nothing_again(name, tmp_path):
    recipe = load_recipe(name)
    summary = run_recipe(recipe, tmp_path, "smoke", log=lambda line: None)
    assert [s["name"] for s in summary["stages"]] == [s["name"] for s in recipe.stages]
    for stage in summary["stages"]:
        assert stage["updates"] == recipe.smoke["updates"] and stage["update_seconds"] > 0
        assert (tmp_path / stage["name"] / "learning_curve.png").exists()
    assert summary["time_to_criterion_s"] == pytest.approx(sum(s["update_seconds"] for s in summary["stages"]),
                                                           abs=0.2)
    assert json.loads((tmp_path / "evaluation.json").read_text()) == json.loads(json.dumps(summary))
    assert isinstance(summary["targets_met"], bool)  # checked, not met after 2 updates per stage
    ev = summary["evaluation"]
    assert ev["checks"] and summary["targets_met"] == all(ev["checks"].values())
    # Later stages start from and learn from earlier ones, as the file says.
    for settings in recipe.stages:
        doc = json.loads((tmp_path / settings["name"] / "policy.json").read_text())
        for key in ("teacher", "init_from"):
            if str(settings.get(key, "")).startswith("@"):
                assert doc["train_config"][key] == str(tmp_path / settings[key][1:] / "policy.json")
    logs = {s["name"]: (tmp_path / s["name"] / "train_log.jsonl").read_text() for s in recipe.stages}
    again = run_recipe(recipe, tmp_path, "smoke", log=lambda line: None)
    assert {s["name"]: (tmp_path / s["name"] / "train_log.jsonl").read_text() for s in recipe.stages} == logs
    assert again["stages"] == summary["stages"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


STAGE = '[[stages]]\nname = "a"\npolicy = "lstm"\nupdates = 1\n'


@pytest.mark.parametrize("text, message", [
    ('family = "imaze"\nbogus = 1\n' + STAGE, "unknown keys"),
    ('family = "maze"\n' + STAGE, "family must be one of"),
    ('family = "imaze"\n', "no \\[\\[stages\\]\\]"),
    ('family = "imaze"\n' + STAGE + 'lr_typo = 1\n', "unknown settings"),
    ('family = "imaze"\n' + STAGE + 'teacher = "@b"\n', "names no earlier stage"),
    ('family = "imaze"\n' + STAGE + STAGE, "unique identifier"),
    ('family = "imaze"\n' + STAGE + '[evaluation]\nepisodes = 3\n', "unknown evaluation settings"),
    ('family = "imaze"\n' + STAGE + '[smoke]\nupdatez = 3\n', "unknown smoke settings"),
    ('family = "imaze"\n[[stages]\n', "r.toml"),
    ('family = "bandit"\nafter = "imaze_lstm"\n' + STAGE, "trains the imaze family"),
    ('family = "imaze"\nafter = "no_such_recipe"\n' + STAGE, "no recipe"),
    ('family = "imaze"\nafter = "imaze_lstm"\n' + STAGE.replace('"a"', '"ppo"'), "unique identifier"),
])
def test_a_bad_recipe_is_refused_before_anything_runs(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, text))
    assert not (tmp_path / "out").exists()


def test_cli_lists_recipes_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    assert main(["train", "--list-recipes"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == RECIPES
    assert main(["train", "--recipe", "no_such_recipe", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no recipe 'no_such_recipe'" in err
    assert main(["train", "bandit", "--recipe", "imaze_lstm", "--out", str(tmp_path / "out")]) == 2
    assert "trains on imaze, not bandit" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_after_puts_the_named_recipes_stages_first(tmp_path):
    """``after``: the sim2real recipes start with the bundled chains they continue, stage for
    stage, and a file that leads back to itself is refused."""
    for name, first in (("imaze_lsnn_sim2real", "imaze_lsnn"), ("imaze_lstm_sim2real", "imaze_lstm")):
        base = load_recipe(first).stages
        assert load_recipe(name).stages[:len(base)] == base
    loop = tmp_path / "loop.toml"
    loop.write_text(f'family = "imaze"\nafter = "{loop}"\n' + STAGE)
    with pytest.raises(RecipeError, match="back to itself"):
        load_recipe(loop)


EXPERIMENT_RECIPES = sorted(str(p) for p in Path("docs").rglob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENT_RECIPES)
def test_the_experiment_recipes_in_docs_still_load(path):
    """The recipes the documents give for their runs (``l2l train --recipe docs/...toml``)
    name only settings the trainer still has, with values it accepts: loading the file or
    building a stage's config raises otherwise (a renamed setting, a removed switch)."""
    recipe = load_recipe(path)
    configs = [stage_config(recipe, settings, Path("/out")) for settings in recipe.stage_settings()]
    assert [c.updates for c in configs] == [s["updates"] for s in recipe.stage_settings()]


def test_there_are_experiment_recipes():
    assert {"docs/navigation/imaze_lsnn_shaped.toml", "docs/arm/arm_lsnn256.toml"} <= set(EXPERIMENT_RECIPES)


def _long_recipe(tmp_path: Path) -> Path:
    return _write(tmp_path, 'family = "bandit"\narms = 2\n[[stages]]\nname = "long"\npolicy = "lstm"\n'
                            'updates = 100000\nnum_envs = 4\nhorizons = [5]\nminibatches = 1\n')


def _start_recipe(recipe: Path, out: Path):
    """`l2l train --recipe` in a session of its own (a terminal's Ctrl-C reaches the whole
    group), once its stage has written a checkpoint."""
    import os
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "l2l_ros.cli", "train", "--recipe", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "long" / "policy.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.2)
    time.sleep(0.5)
    return proc


def _log_updates(out: Path) -> list[int]:
    return [json.loads(x)["update"] for x in (out / "long" / "train_log.jsonl").read_text().splitlines()]


def test_ctrl_c_on_a_recipe_saves_the_stage_in_its_own_process_and_a_kill_leaves_no_stage_running(tmp_path):
    """Each stage trains in a child process (``recipes.train_stage``). A Ctrl-C to the
    terminal's process group must still finish and save the current update (exit 130), and
    a SIGKILL of the recipe run must take its stage's process with it: the log stops."""
    import os
    import signal
    import time

    from safetensors import safe_open

    recipe, out = _long_recipe(tmp_path), tmp_path / "out"
    proc = _start_recipe(recipe, out)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "the same command resumes" in err, err
    with safe_open(str(out / "long" / "trainer_state.safetensors"), "pt") as f:
        saved = int(f.metadata()["update"])
    assert saved >= 1 and _log_updates(out) == list(range(1, saved + 1))  # saved where it stopped

    proc = _start_recipe(recipe, out)  # the same command resumes; then a SIGKILL of the parent only
    deadline = time.monotonic() + 120
    while len(_log_updates(out)) < saved + 3:  # the resumed stage is training
        assert proc.poll() is None and time.monotonic() < deadline, "the resumed stage did not train"
        time.sleep(0.2)
    assert _log_updates(out)[:saved + 3] == list(range(1, saved + 4))
    proc.kill()
    proc.wait(timeout=30)
    time.sleep(1.0)
    after_kill = len(_log_updates(out))
    time.sleep(3.0)
    assert len(_log_updates(out)) == after_kill, "the stage kept training after its recipe run was killed"
