"""The `l2l` command line as users meet it: every option explained, and every command
printed in the README and the model cards accepted as written (issue 34)."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from l2l_ros.cli import build_parser
from l2l_ros.recipes import list_recipes

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "models").rglob("README.md"))]
#: `l2l ARGS`, however it is started (the venv's script, ``python -m l2l_ros.cli``, torchrun).
L2L = r"(?:\S*/)?(?:l2l|python3?\s+-m\s+l2l_ros\.cli|torchrun\s.*-m\s+l2l_ros\.cli)\s+(.*)$"
#: In a ```bash or ```sh block every such line is a command; in any other block (a
#: program's output) only a line with a "$ " prompt is.
SHELL_LINE = re.compile(r"^\s*(?:\$\s+)?" + L2L)
PROMPT_LINE = re.compile(r"^\s*\$\s+" + L2L)


def _parsers(parser: argparse.ArgumentParser, path: str = "l2l"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_of_every_verb_has_help_text():
    missing = [f"{path} {action.option_strings or action.dest}"
               for path, parser in _parsers(build_parser()) for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
               and not (action.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def documented_commands() -> list[tuple[str, str]]:
    """(document, arguments after `l2l`) for every command line in a fenced block."""
    found = []
    for doc in DOCUMENTS:
        block, pending = None, ""  # the open block's pattern
        for line in doc.read_text().splitlines():
            fence = line.strip()
            if fence.startswith("```"):
                shell = fence[3:].strip() in ("bash", "sh", "shell", "console")
                block, pending = (None if block else SHELL_LINE if shell else PROMPT_LINE), ""
                continue
            if block is None:
                continue
            line = pending + line
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            match = block.match(line)
            if match:
                found.append((doc.relative_to(ROOT).as_posix(), match.group(1)))
    return found


COMMANDS = documented_commands()


def test_the_documents_print_commands():
    docs = {doc for doc, _ in COMMANDS}
    assert "README.md" in docs and "models/imaze_lsnn/README.md" in docs, docs


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{c[:40]}" for d, c in COMMANDS])
def test_a_documented_command_is_accepted_as_written(doc, command):
    args = shlex.split(command, comments=True)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{doc}: `l2l {command}` is refused: {err.getvalue().strip()}")
    recipe = getattr(parsed, "recipe", "")
    if recipe and not recipe.endswith(".toml"):
        assert recipe in list_recipes(), f"{doc}: no recipe {recipe!r}"
    for name in ("checkpoint", "teacher", "init_from"):
        values = getattr(parsed, name, None)
        for value in values if isinstance(values, list) else [values]:
            path = str(value or "").partition("=")[2] or str(value or "")
            if path.startswith("models/"):
                assert (ROOT / path).exists(), f"{doc}: `l2l {command}` names {path}, which is not in the repository"


def test_make_setup_puts_l2l_in_the_venv_and_it_runs_from_any_folder(tmp_path):
    """A new user ran `l2l` after `make run` and it was not found (issue 34)."""
    import subprocess

    l2l = ROOT / ".venv" / "bin" / "l2l"
    assert l2l.exists(), "make setup writes .venv/bin/l2l"
    done = subprocess.run([str(l2l), "train", "--list-recipes"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(list_recipes()) <= set(done.stdout.split())
    bad = subprocess.run([str(l2l), "eval", "imaze", "--checkpoint", str(tmp_path / "none.json")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
