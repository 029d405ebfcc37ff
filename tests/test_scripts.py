"""The workflow's scripts: each is one call of a step through ``call_step``, which turns a
flexcore error into one line in the rule's log (no traceback) and exit status 1, while an
unexpected exception keeps its traceback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flexcore.cli.main import call_step
from flexcore.core.errors import ConfigError, InputFileError

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def run_bad_input(path):
    raise InputFileError(path, "is not a particle file")


def run_bug():
    raise ZeroDivisionError("a bug")


def test_a_user_error_is_one_line_and_exit_status_1(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        call_step(run_bad_input, tmp_path / "x.star")
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flexcore bad-input: error: ")
    assert "x.star: is not a particle file" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        call_step(lambda: (_ for _ in ()).throw(ConfigError("train.epochs = 'two'")))


def test_an_unexpected_error_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        call_step(run_bug)


def test_call_step_returns_what_the_step_returns():
    assert call_step(lambda a, b=1: a + b, 2, b=3) == 5


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_every_script_logs_to_its_rule_and_calls_one_step(script):
    source = (SCRIPTS / script).read_text()
    tree = ast.parse(source)
    assert 'sys.stderr = open(snakemake.log[0], "w", buffering=1)' in source, script
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "call_step"]
    assert len(calls) == 1, f"{script} makes {len(calls)} call_step calls (one expected)"
    step = calls[0].args[0].id
    assert step.startswith("run_"), f"{script} calls {step}, not a stage's run_ function"
    assert len(source.splitlines()) <= 40, f"{script} is longer than 40 lines"
