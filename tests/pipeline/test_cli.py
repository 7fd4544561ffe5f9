"""Stage entry points: bad input ends with one line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline import config
from pipeline.cli import EXIT_INPUT, run_stage
from pipeline.errors import InputError


def test_input_error_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def bad() -> None:
        raise InputError("not a number: 'x'", file="lieux-2021.csv", column="vma", rows=[4])

    with pytest.raises(SystemExit) as exit_info:
        run_stage(bad)
    assert exit_info.value.code == EXIT_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: file lieux-2021.csv, column 'vma', line 4: not a number: 'x'"]


def test_message_lists_at_most_five_lines() -> None:
    message = str(InputError("bad", file="f.csv", rows=range(2, 12)))
    assert message == "file f.csv, lines 2, 3, 4, 5, 6 (+5 more): bad"
    assert str(InputError("plain")) == "plain"


def test_input_error_keeps_its_fields_through_pickle() -> None:
    # How a job worker's error reaches the API process.
    error = InputError("not a number", file="records.csv", column="lat", rows=[3, 7])
    back = pickle.loads(pickle.dumps(error))
    assert isinstance(back, InputError) and str(back) == str(error)
    assert (back.reason, back.file, back.column, back.rows) == ("not a number", "records.csv", "lat", [3, 7])


def test_success_returns_normally() -> None:
    run_stage(lambda: logging.getLogger("x").info("ok"))


def test_params_with_an_unknown_key_are_refused_naming_it(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  yearz: [2020]\n")
    with pytest.raises(ValidationError) as refused:
        config.load_params(params)
    assert "yearz" in str(refused.value) and "Extra inputs are not permitted" in str(refused.value)


@pytest.mark.slow  # a real Python process
def test_stage_module_runs_as_a_process(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  yearz: [2020]\n")
    code = (
        "import sys; from pathlib import Path; from pipeline import config;"
        f"print(config.load_params(Path({str(params)!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "yearz" in result.stderr and "Extra inputs are not permitted" in result.stderr
