"""Batch scoring job: real extracts end to end, rejects and policy, atomic and idempotent writes,
bit-for-bit equality with ``evaluate``, and every kind of bad input through the CLI."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.batch import flat, loading, run, stop
from pipeline.batch.cli import main
from pipeline.batch.flat_checks import numeric_or_text, physical_lines
from pipeline.batch.inputs import extract_zip
from pipeline.batch.limits import ByteBudget, LimitExceeded, Limits
from pipeline.batch.loading import ModelUnavailable, model_uri
from pipeline.batch.outputs import sibling
from pipeline.batch.run import score_to_files
from pipeline.batch.summary import outcome_metrics
from pipeline.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_IO, EXIT_MODEL, EXIT_TERMINATED
from pipeline.errors import InputError
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET
from pipeline.settings import PipelineSettings
from pipeline.storage import atomic_paths, sha256_of

ROOT = Path(__file__).resolve().parents[2]
CARAC_2021 = "carcteristiques-2021.csv"


# ---------------------------------------------------------------------------
# helpers


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    """Run the CLI in process (one prediction thread); returns the exit code and stderr."""
    args = [str(a) for a in argv]
    code = main(args if "--n-jobs" in args else [*args, "--n-jobs", "1"])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The CLI's one-line error (and check there is exactly one and no traceback)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def outputs(out: Path) -> list[Path]:
    """Every file the job may have left beside ``out``, temporary ones included."""
    return sorted(p for p in out.parent.iterdir() if p.name.startswith((out.stem, f".{out.stem}")))


def copy_year(extracts: Path, dest: Path, year: int = 2021) -> Path:
    """A writable copy of one year's real extract files."""
    folder = dest / f"baac-{year}"
    shutil.copytree(extracts / str(year), folder)
    return folder


def edit_cell(path: Path, line: int, column: str, value: str) -> None:
    """Corrupt one cell of a raw (quoted, ';'-separated) table, in place."""
    rows = path.read_text(encoding="utf-8").split("\n")
    header = [h.strip('"') for h in rows[0].split(";")]
    fields = rows[line - 1].split(";")
    assert len(fields) == len(header)
    fields[header.index(column)] = f'"{value}"'
    rows[line - 1] = ";".join(fields)
    path.write_text("\n".join(rows), encoding="utf-8")


def flat_csv(records: pd.DataFrame, path: Path, sep: str = ";", **kwargs: Any) -> Path:
    """Real records written as a flat CSV, the way a data engineer would export them."""
    records.to_csv(path, sep=sep, index=False, **kwargs)
    return path


def without_time(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="scored_at")


@dataclass
class Scored:
    """What a run wrote, read back."""

    scored: pd.DataFrame
    rejects: pd.DataFrame
    summary: dict[str, Any]


def score_paths(paths: list[Path], model: Any, **options: Any) -> Scored:
    """Run the job's orchestrator into a temporary folder and read its three outputs back."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.parquet"
        summary = score_to_files(paths, out, model, **options)
        rejects = pd.read_csv(sibling(out, ".rejects.csv"), dtype=str, keep_default_na=False)
        return Scored(pd.read_parquet(out), rejects.astype({"line": int}), summary)


@pytest.fixture
def job_defaults() -> None:
    """Requested by the tests that run the job as users do, recording its scoring run (the default)."""


@pytest.fixture(autouse=True)
def _no_scoring_runs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """No scoring run for the other runs (MONITOR_RECORD=false): each one would spawn the MLflow
    logging process (seconds of imports) for a run these tests do not look at. Recording, its
    process, and bad input with it on are tested in test_monitoring_runs."""
    if "job_defaults" not in request.fixturenames:
        monkeypatch.setenv("MONITOR_RECORD", "false")


@pytest.fixture
def flat_2021(records, tmp_path: Path) -> Path:
    return flat_csv(records[2021], tmp_path / "records-2021.csv")


# ---------------------------------------------------------------------------
# end to end on the real extracts


def test_raw_folder_is_bit_for_bit_evaluate(trained, extracts: Path) -> None:
    result = score_paths([extracts / "2021"], trained.model)
    evaluated = pd.read_parquet(trained.reports / "predictions_test.parquet")
    scored = result.scored
    assert list(scored.columns) == [
        "id",
        "proba",
        "label",
        "threshold",
        "model_name",
        "model_version",
        "model_alias",
        "run_id",
        "scored_at",
    ]
    assert scored["proba"].dtype == np.float64
    assert (scored["id"].to_numpy() == trained.test[ID_COLUMN].to_numpy()).all()
    assert (scored["proba"].to_numpy() == trained.model.predict_frame(trained.test)).all()
    assert (scored["id"].to_numpy() == evaluated[ID_COLUMN].to_numpy()).all()
    assert (scored["proba"].to_numpy() == evaluated["proba"].to_numpy()).all()
    assert (scored["label"] == (scored["proba"] >= trained.model.threshold)).all()
    assert scored["scored_at"].nunique() == 1
    summary = result.summary
    assert summary["counts"] == {
        "input_rows": len(trained.test),
        "scored": len(trained.test),
        "rejected": 0,
        "rejected_cells": 0,
        "predicted_severe": int(scored["label"].sum()),
    }
    # The same function on the same rows as evaluate: the same metrics.
    assert summary["outcome"]["metrics"] == trained.metrics["test"]
    assert sum(summary["outcome"]["confusion"].values()) == len(trained.test)
    assert sum(summary["scores"]["histogram"]["counts"]) == len(trained.test)
    assert result.rejects.empty


@pytest.mark.slow  # the CLI resolves @champion in a spawned lookup process that imports MLflow
def test_cli_default_champion_from_registry(registry, trained, extracts: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, extracts / "2021", "--output", out)
    assert code == 0, err
    scored = pd.read_parquet(out)
    evaluated = pd.read_parquet(trained.reports / "predictions_test.parquet")
    assert (scored["proba"].to_numpy() == evaluated["proba"].to_numpy()).all()
    assert set(scored["model_version"]) == {registry.version}
    assert set(scored["model_alias"]) == {"champion"}
    assert set(scored["model_name"]) == {registry.model_name}
    assert set(scored["run_id"]) == {registry.run_id}
    assert pq.read_schema(out).field("scored_at").type.tz == "UTC"
    summary = json.loads(out.with_name("scores.summary.json").read_text())
    assert summary["model"]["version"] == registry.version
    files = {Path(f["path"]).name: f["sha256"] for f in summary["input"]["files"]}
    assert files == {p.name: sha256_of(p) for p in (extracts / "2021").iterdir()}
    assert out.with_name("scores.rejects.csv").read_text() == "id,line,column,value,reason\n"


@pytest.mark.slow  # one spawned MLflow lookup process per alias
@pytest.mark.parametrize("spec", ["candidate", "@champion", "1"])
def test_cli_model_by_alias_or_version(registry, extracts: Path, tmp_path: Path, capsys, spec: str) -> None:
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, extracts / "2021", "-o", out, "--model", spec)
    assert code == 0, err
    assert set(pd.read_parquet(out)["model_version"]) == {registry.version}


def test_model_uri_forms() -> None:
    settings = PipelineSettings(model_name="m", model_alias="champion")
    assert model_uri(None, settings) == "models:/m@champion"
    assert model_uri("candidate", settings) == "models:/m@candidate"
    assert model_uri("@candidate", settings) == "models:/m@candidate"
    assert model_uri("7", settings) == "models:/m/7"
    assert model_uri("models:/other/2", settings) == "models:/other/2"
    assert model_uri("no/such/folder", settings) == "no/such/folder"


def test_zip_with_nested_folders_and_list_of_files(trained, extracts: Path, tmp_path: Path) -> None:
    archive = tmp_path / "baac-2021.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((extracts / "2021").iterdir()):
            zf.write(f, f"export/baac/2021/{f.name}")
        zf.writestr("__MACOSX/._lieux-2021.csv", b"junk")
    expected = trained.model.predict_frame(trained.test)
    zipped = score_paths([archive], trained.model)
    assert (zipped.scored["proba"].to_numpy() == expected).all()
    assert zipped.summary["input"]["files"][0]["path"] == str(archive)
    assert any(f["path"] == f"{archive}:export/baac/2021/{CARAC_2021}" for f in zipped.summary["input"]["files"])
    listed = score_paths(sorted((extracts / "2021").iterdir()), trained.model)
    assert (listed.scored["proba"].to_numpy() == expected).all()


def test_flat_csv_of_real_records_scores_like_raw(trained, records, flat_2021: Path) -> None:
    result = score_paths([flat_2021], trained.model)
    assert (result.scored["proba"].to_numpy() == trained.model.predict_frame(trained.test)).all()
    assert list(result.scored["id"]) == [str(i) for i in records[2021][ID_COLUMN]]
    assert result.summary["input"]["kind"] == "flat"
    assert result.summary["input"]["separator"] == ";"
    assert result.summary["outcome"]["metrics"] == trained.metrics["test"]


def test_flat_csv_comma_latin1_no_id_no_outcome(trained, records, extracts: Path, tmp_path: Path) -> None:
    frame = records[2021].drop(columns=[ID_COLUMN, TARGET])
    carac = pd.read_csv(extracts / "2021" / CARAC_2021, sep=";", dtype=str)
    # An extra column with accents (real addresses) makes the latin-1 encoding matter.
    addresses = carac.set_index("Num_Acc").loc[records[2021][ID_COLUMN].astype(str), "adr"]
    frame.insert(0, "libellé_adresse", addresses.to_numpy())
    path = flat_csv(frame, tmp_path / "records.csv", sep=",", encoding="latin-1", errors="replace")
    result = score_paths([path], trained.model)
    assert (result.scored["proba"].to_numpy() == trained.model.predict_frame(trained.test)).all()
    assert list(result.scored["id"]) == list(range(1, len(frame) + 1))
    assert result.summary["input"]["encoding"] == "latin-1"
    assert "outcome" not in result.summary


def test_flat_csv_gzip_in_small_blocks_matches_one_block(trained, records, tmp_path: Path) -> None:
    path = flat_csv(records[2021], tmp_path / "records.csv.gz", compression="gzip")
    out = tmp_path / "scores.parquet"
    summary = score_to_files([path], out, trained.model, block_size=20_000)
    assert pq.ParquetFile(out).num_row_groups > 1
    streamed = pd.read_parquet(out)
    one_block = score_paths([path], trained.model).scored
    pd.testing.assert_frame_equal(without_time(streamed), without_time(one_block))
    assert summary["counts"]["scored"] == len(records[2021])


def test_with_features(trained, flat_2021: Path, extracts: Path, tmp_path: Path) -> None:
    for source in (flat_2021, extracts / "2021"):
        out = tmp_path / f"{source.stem}.parquet"
        summary = score_to_files([source], out, trained.model, with_features=True)
        back = pd.read_parquet(out)
        assert list(back.columns[9:]) == list(RECORD_COLUMNS)
        schema = pq.read_schema(out)
        assert schema.field("vma").type == "int32" and schema.field("lat").type == "double"
        assert (back["proba"].to_numpy() == trained.model.predict_frame(trained.test)).all()
        assert summary["counts"]["scored"] == len(back)
        assert json.loads(sibling(out, ".summary.json").read_text())["counts"]["scored"] == len(back)
        assert sibling(out, ".rejects.csv").exists()


# ---------------------------------------------------------------------------
# rejects, policy, atomicity, idempotence


def corrupt_flat(records: pd.DataFrame, path: Path) -> tuple[Path, pd.DataFrame]:
    """Deliberately corrupted copies of real rows: an unknown code, text in a number,
    a repeated id, a short line and a bad outcome."""
    frame = records.astype({"lum": "string", "vma": "string", TARGET: "string"}).reset_index(drop=True)
    frame.loc[2, "lum"] = "9"
    frame.loc[4, "vma"] = "abc"
    frame.loc[6, TARGET] = "2"
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    flat_csv(frame, path)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("202100000003;2021;1\n")
    return path, frame


def test_bad_rows_go_to_rejects_under_the_policy(trained, records, tmp_path: Path, capsys) -> None:
    path, frame = corrupt_flat(records[2021], tmp_path / "records.csv")
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, path, "-o", out, "--model", trained.model_dir, "--max-reject-rate", 0.05)
    assert code == 0, err
    rejects = pd.read_csv(sibling(out, ".rejects.csv"), dtype={"id": str, "value": str})
    last = len(frame) + 2  # header, rows, then the short line
    by_line = rejects.set_index("line")
    assert by_line.loc[4, "column"] == "lum" and by_line.loc[4, "value"] == "9"
    assert "codebook" in by_line.loc[4, "reason"]
    assert by_line.loc[6, "column"] == "vma" and by_line.loc[6, "value"] == "abc"
    assert by_line.loc[8, "column"] == TARGET
    assert by_line.loc[last - 1, "column"] == ID_COLUMN and "line 3" in by_line.loc[last - 1, "reason"]
    assert "expected" in by_line.loc[last, "reason"]
    assert list(rejects["id"][:3]) == [str(frame.loc[i, ID_COLUMN]) for i in (2, 4, 6)]
    scored = pd.read_parquet(out)
    assert len(scored) == len(frame) - 4
    summary = json.loads(sibling(out, ".summary.json").read_text())
    assert summary["counts"]["rejected"] == 5
    assert summary["counts"]["input_rows"] == len(frame) + 1
    assert summary["outcome"]["rows"] == len(scored)


def test_too_many_rejects_fail_and_write_nothing(trained, records, tmp_path: Path, capsys) -> None:
    path, _ = corrupt_flat(records[2021], tmp_path / "records.csv")
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, path, "-o", out, "--model", trained.model_dir)
    assert code == EXIT_INPUT
    line = error_line(err)
    assert str(path) in line and "line 4" in line and "'lum'" in line and "5 of" in line
    assert outputs(out) == []


def test_raw_unknown_code_and_duplicate_id(trained, extracts: Path, tmp_path: Path, capsys) -> None:
    folder = copy_year(extracts, tmp_path)
    edit_cell(folder / CARAC_2021, 5, "lum", "9")
    rows = (folder / CARAC_2021).read_text(encoding="utf-8").rstrip("\n").split("\n")
    rows.append(rows[10])  # line 11 again, as the last line
    (folder / CARAC_2021).write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = score_paths([folder], trained.model, max_reject_rate=0.05)
    rejects = result.rejects
    assert len(result.scored) == len(trained.test) - 2
    assert rejects["line"].tolist() == [5, 11, len(rows)]
    assert rejects["column"].tolist() == ["lum", ID_COLUMN, ID_COLUMN]
    assert result.summary["counts"]["rejected"] == 3
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, folder, "-o", out, "--model", trained.model_dir, "--max-reject-rate", 0)
    assert code == EXIT_INPUT
    line = error_line(err)
    assert CARAC_2021 in line and "line 5" in line and "'lum'" in line
    assert outputs(out) == []


def test_interrupted_write_leaves_previous_outputs_untouched(
    trained, flat_2021: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "scores.parquet"
    assert cli(capsys, flat_2021, "-o", out, "--model", trained.model_dir)[0] == 0
    before = {p.name: p.read_bytes() for p in outputs(out)}
    assert len(before) == 3
    write_table = pq.ParquetWriter.write_table
    calls: list[int] = []

    def fail_after_first_row_group(self, table, row_group_size=None):
        calls.append(table.num_rows)
        if len(calls) > 1:
            raise OSError(28, "No space left on device (injected)")
        return write_table(self, table, row_group_size=row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_after_first_row_group)
    code, err = cli(capsys, flat_2021, "-o", out, "--model", trained.model_dir, "--block-size", 20_000)
    assert code == EXIT_IO
    assert "No space left" in error_line(err)
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in outputs(out)} == before


def test_ctrl_c_mid_run_leaves_no_output(trained, flat_2021: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    original = run.output_frame
    calls: list[int] = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "output_frame", interrupted)
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, flat_2021, "-o", out, "--model", trained.model_dir, "--block-size", 20_000)
    assert code == EXIT_INTERRUPTED
    assert "interrupted" in error_line(err)
    assert outputs(out) == []


def test_a_stop_request_ends_the_run_at_the_next_block(
    trained, flat_2021: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """What the SIGTERM handler does, without the signal: the run stops between blocks, exit 143."""
    original = run.output_frame

    def terminated(*args: Any, **kwargs: Any) -> pd.DataFrame:
        stop.request_stop(signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "output_frame", terminated)
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, flat_2021, "-o", out, "--model", trained.model_dir, "--block-size", 20_000)
    assert code == EXIT_TERMINATED
    assert error_line(err) == "error: terminated, nothing written"
    assert outputs(out) == []
    stop.check_stop()  # the request ended with the run


def test_rerun_is_idempotent(trained, records, tmp_path: Path, capsys) -> None:
    path, _ = corrupt_flat(records[2021], tmp_path / "records.csv")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name / "scores.parquet"
        code, err = cli(capsys, path, "-o", out, "--model", trained.model_dir, "--max-reject-rate", 0.05)
        assert code == 0, err
        summary = json.loads(sibling(out, ".summary.json").read_text())
        for key in ("scored_at", "timings_s"):
            summary.pop(key)
        runs.append((pd.read_parquet(out), sibling(out, ".rejects.csv").read_bytes(), summary))
    (first, rejects_a, summary_a), (second, rejects_b, summary_b) = runs
    pd.testing.assert_frame_equal(without_time(first), without_time(second))
    assert rejects_a == rejects_b
    assert summary_a == summary_b


def test_blank_and_malformed_lines_keep_line_numbers(trained, records, tmp_path: Path) -> None:
    path = flat_csv(records[2021].head(20), tmp_path / "records.csv")
    rows = path.read_text().split("\n")
    bad = rows[5].replace("2021;", "2021;;", 1)  # one field too many: line 8 once two lines are inserted
    rows[3:3] = ["", bad]
    rows[12] = rows[12].replace(";2021;", ";2021x;", 1)  # text in a number, line 13
    rows[15] = rows[15][rows[15].index(";") :]  # no id, line 16
    path.write_text("\n".join(rows))
    result = score_paths([path], trained.model, max_reject_rate=1)
    assert result.rejects["line"].tolist() == [5, 13, 16]
    assert result.rejects["column"].tolist() == ["", "an", ID_COLUMN]
    assert result.rejects["reason"].iloc[2] == "missing id"
    assert result.summary["counts"] == {
        "input_rows": 21,
        "scored": 18,
        "rejected": 3,
        "rejected_cells": 3,
        "predicted_severe": int(result.scored["label"].sum()),
    }


def test_repeated_ids_are_caught_across_blocks(trained, records, tmp_path: Path) -> None:
    frame = records[2021].head(300).astype({ID_COLUMN: str}).reset_index(drop=True)
    first = frame.loc[3, ID_COLUMN]
    frame.loc[250, ID_COLUMN] = first  # an integer id again, blocks later
    frame.loc[251, ID_COLUMN] = "0" + first  # another id: written differently
    frame.loc[[10, 260], ID_COLUMN] = "A-7"  # a text id again
    frame.loc[261, ID_COLUMN] = " A-7 "  # the same once trimmed
    frame.loc[20, ID_COLUMN] = ""
    path = flat_csv(frame, tmp_path / "records.csv")
    out = tmp_path / "scores.parquet"
    summary = score_to_files([path], out, trained.model, block_size=20_000, max_reject_rate=1)
    assert pq.ParquetFile(out).num_row_groups > 2  # the repeats are blocks away from the first ones
    rejects = pd.read_csv(sibling(out, ".rejects.csv"), dtype={"id": str, "value": str}, keep_default_na=False)
    assert rejects[["line", "id", "reason"]].values.tolist() == [
        [22, "", "missing id"],
        [252, first, "duplicate id: already on line 5"],
        [262, "A-7", "duplicate id: already on line 12"],
        [263, "A-7", "duplicate id: already on line 12"],
    ]
    assert summary["counts"]["scored"] == 296
    assert "0" + first in set(pd.read_parquet(out)["id"])


@pytest.mark.parametrize("odd", ["NaN", "abc"])
def test_numbers_parsed_while_reading_until_a_block_needs_text(
    odd: str, trained, records, tmp_path: Path, monkeypatch
) -> None:
    """Arrow parses the numbers as it reads until a block holds "NaN" or text; from that block on
    the file is read as text. Rejects, lines and scores are those of reading it all as text."""
    frame = records[2021]  # 408 records: ten blocks of 8 KiB
    path = flat_csv(frame, tmp_path / "records.csv")
    rows = path.read_text().split("\n")
    header = rows[0].split(";")

    def edit(line: int, column: str, value: str) -> None:
        cells = rows[line - 1].split(";")
        cells[header.index(column)] = value
        rows[line - 1] = ";".join(cells)

    rows[60] += ";1"  # line 61, one field too many: read by the typed reader
    edit(102, "lum", "9")  # unknown code in a typed block: reported as written
    edit(200, "vma", odd)  # the text reader takes over from this block...
    rows[205] += ";1"  # ...which holds a malformed line both readers see
    edit(330, "an", "2021x")  # text in a number, read as text
    path.write_text("\n".join(rows))
    checks: list[bool] = []
    finite_numbers = flat.finite_numbers

    def spy(block: pa.RecordBatch) -> bool:
        checks.append(finite_numbers(block))
        return checks[-1]

    def run(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        out = tmp_path / name / "scores.parquet"
        summary = score_to_files([path], out, trained.model, block_size=8192, max_reject_rate=1)
        rejects = pd.read_csv(sibling(out, ".rejects.csv"), dtype=str, keep_default_na=False)
        return without_time(pd.read_parquet(out)), rejects, summary["counts"]

    monkeypatch.setattr(flat, "finite_numbers", spy)
    mixed = run("mixed")
    assert checks.count(True) >= 3 and checks.count(False) == (odd == "NaN")  # typed blocks first, then text
    monkeypatch.setattr(flat, "finite_numbers", lambda block: False)
    text = run("text")
    pd.testing.assert_frame_equal(mixed[0], text[0])
    pd.testing.assert_frame_equal(mixed[1], text[1])
    assert mixed[2] == text[2]
    rejects = mixed[1].sort_values("line", key=lambda line: line.astype(int))
    assert rejects["line"].tolist() == ["61", "102", "200", "206", "330"]
    assert rejects["column"].tolist() == ["", "lum", "vma", "", "an"]
    assert rejects["value"].tolist()[1:3] == ["9", odd] and rejects["value"].iloc[4] == "2021x"
    assert len(mixed[0]) == len(frame) - 5


def test_numeric_fast_path_leaves_odd_cells_to_check_records() -> None:
    clean = numeric_or_text(pa.chunked_array([["1", None, "2.5"]]))
    assert isinstance(clean, np.ndarray) and np.isnan(clean[1]) and clean[2] == 2.5
    for odd in (["1", "NaN"], ["1", "inf"], [" 1", "2"], ["1,5", "2"]):
        assert isinstance(numeric_or_text(pa.chunked_array([odd])), pd.Series)


def test_outcome_metrics_need_known_outcomes() -> None:
    assert outcome_metrics(np.array([np.nan, np.nan]), np.array([0.2, 0.8]), 0.5) is None


def test_zip_with_a_link_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "baac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("lieux-2021.csv")
        link.external_attr = (0o120777 << 16) | 0
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        extract_zip(archive, tmp_path, ByteBudget(None))


def test_output_that_is_the_input_is_refused(trained, flat_2021: Path, tmp_path: Path, capsys) -> None:
    before = flat_2021.read_bytes()
    link = tmp_path / "link.parquet"
    link.hardlink_to(flat_2021)  # another name, the same file
    for out in (flat_2021, link):
        code, err = cli(capsys, flat_2021, "-o", out, "--model", trained.model_dir)
        assert code == EXIT_INPUT and "would overwrite an input file" in error_line(err)
    assert flat_2021.read_bytes() == before


def test_fifo_input_and_device_output_are_refused(trained, flat_2021: Path, tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "records.csv.fifo"
    os.mkfifo(fifo)
    code, err = cli(capsys, fifo, "-o", tmp_path / "scores.parquet", "--model", trained.model_dir)
    assert code == EXIT_INPUT and "not a regular file" in error_line(err)
    folder = tmp_path / "with-fifo"
    folder.mkdir()
    os.mkfifo(folder / "caracteristiques-2021.csv")
    code, err = cli(capsys, folder, "-o", tmp_path / "scores.parquet", "--model", trained.model_dir)
    assert code == EXIT_INPUT and "not a regular file" in error_line(err)
    out_fifo = tmp_path / "out.parquet"
    os.mkfifo(out_fifo)
    code, err = cli(capsys, flat_2021, "-o", out_fifo, "--model", trained.model_dir)
    assert code == EXIT_INPUT and "not a regular file" in error_line(err)
    assert out_fifo.is_fifo()
    code, err = cli(capsys, flat_2021, "-o", "/dev/null", "--model", trained.model_dir)
    assert code == EXIT_INPUT and "not a regular file" in error_line(err)
    assert Path("/dev/null").is_char_device()


def test_outputs_are_published_all_together_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    dests = [tmp_path / name for name in ("a.csv", "b.json", "c.parquet")]
    for dest in dests:
        dest.write_text("old")
    replace = Path.replace
    failed: list[Path] = []

    def fail_on_parquet(self: Path, target: Any) -> Path:
        """The new Parquet file cannot be renamed into place (once: its old file can be put back)."""
        if Path(target).name == "c.parquet" and self.read_text() == "new" and not failed:
            failed.append(self)
            raise OSError(28, "No space left on device (injected)")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", fail_on_parquet)
    with pytest.raises(OSError, match="No space left"), atomic_paths(*dests) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert [d.read_text() for d in dests] == ["old", "old", "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json", "c.parquet"]  # no debris
    monkeypatch.setattr(Path, "replace", replace)
    (tmp_path / "d.csv").write_text("")
    with atomic_paths(tmp_path / "d.csv", tmp_path / "new.json") as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json", "c.parquet", "d.csv", "new.json"]


def test_limits_are_counted_while_reading(trained, records, tmp_path: Path) -> None:
    """Expanded bytes of gz (alone or inside a zip) and of zips, and rows: LimitExceeded, no output."""
    text = records[2021].to_csv(sep=";", index=False).encode()
    plain = tmp_path / "records.csv"
    plain.write_bytes(text)
    gz = tmp_path / "records.csv.gz"
    gz.write_bytes(gzip.compress(text))
    archive = tmp_path / "records.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inner/records.csv.gz", gzip.compress(text))
    raw_zip = tmp_path / "baac.zip"
    with zipfile.ZipFile(raw_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((ROOT / "tests/data/baac/2021").iterdir()):
            zf.write(f, f.name)
    out = tmp_path / "out" / "scores.parquet"
    small = Limits(max_expanded_bytes=len(text) - 1)
    for path in (plain, gz, archive, raw_zip):
        with pytest.raises(LimitExceeded) as exc:
            score_to_files([path], out, trained.model, limits=small)
        assert exc.value.limit == "max_expanded_bytes" and f"{len(text) - 1:,} bytes" in str(exc.value)
    with pytest.raises(LimitExceeded, match="100 rows"):
        score_to_files([gz], out, trained.model, limits=Limits(max_rows=100), block_size=8192)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    summary = score_to_files([archive], out, trained.model, limits=Limits(max_expanded_bytes=len(text)))
    assert summary["counts"]["input_rows"] == len(records[2021])


@pytest.mark.slow
@pytest.mark.usefixtures("job_defaults")
def test_sigterm_cleans_up_and_exits_143(registry, records, tmp_path: Path) -> None:
    """SIGTERM mid-run (docker stop): exit 143, one line, no output, no temporary file, no child left."""
    frame = records[2021].iloc[np.arange(100_000) % len(records[2021])].reset_index(drop=True)
    frame[ID_COLUMN] = np.arange(1, len(frame) + 1)  # resampled real rows, renumbered
    path = flat_csv(frame, tmp_path / "records.csv")
    out = tmp_path / "out" / "scores.parquet"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "MLFLOW_TRACKING_URI": registry.tracking_uri}
    job = subprocess.Popen(
        [sys.executable, "-m", "pipeline.score", path, "-o", out, "--n-jobs", "1"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(job.pid)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while not children and time.monotonic() < deadline:  # the model lookup has started
        children = parent.children(recursive=True)
        time.sleep(0.05)
    assert children, "no lookup process"
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == EXIT_TERMINATED, err
    assert error_line(err) == "error: terminated, nothing written"
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert list(tmp.iterdir()) == []
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


def test_physical_lines() -> None:
    # Lines 3 and 4 were skipped: parsed rows 0, 1, 2 are lines 2, 5, 6.
    assert physical_lines(np.arange(3), np.array([3, 4])).tolist() == [2, 5, 6]
    assert physical_lines(np.arange(2, 4), np.array([], dtype=np.int64)).tolist() == [4, 5]


# ---------------------------------------------------------------------------
# bad input through the CLI: exit 2, one line naming file/line/column, no output


def _missing_table(folder: Path, tmp: Path) -> list[Path]:
    (folder / "usagers-2021.csv").unlink()
    return [folder]


def _two_years(folder: Path, tmp: Path) -> list[Path]:
    (folder / CARAC_2021).unlink()
    shutil.copy(ROOT / "tests/data/baac/2020/caracteristiques-2020.csv", folder)
    return [folder]


def _rows_of_two_years(folder: Path, tmp: Path) -> list[Path]:
    edit_cell(folder / CARAC_2021, 7, "an", "2020")
    return [folder]


def _raw_wrong_separator(folder: Path, tmp: Path) -> list[Path]:
    path = folder / "lieux-2021.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(";", ","), encoding="utf-8")
    return [folder]


def _raw_latin1(folder: Path, tmp: Path) -> list[Path]:
    path = folder / CARAC_2021
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1", errors="replace"))
    return [folder]


def _raw_empty(folder: Path, tmp: Path) -> list[Path]:
    (folder / "lieux-2021.csv").write_bytes(b"")
    return [folder]


def _raw_header_only(folder: Path, tmp: Path) -> list[Path]:
    path = folder / "vehicules-2021.csv"
    path.write_text(path.read_text(encoding="utf-8").split("\n")[0] + "\n", encoding="utf-8")
    return [folder]


def _raw_missing_column(folder: Path, tmp: Path) -> list[Path]:
    path = folder / "lieux-2021.csv"
    text = path.read_text(encoding="utf-8").replace('"vma"', '"vmax"', 1)
    path.write_text(text, encoding="utf-8")
    return [folder]


def _raw_text_in_number(folder: Path, tmp: Path) -> list[Path]:
    edit_cell(folder / "lieux-2021.csv", 9, "vma", "cinquante")
    return [folder]


def _flat(folder: Path, tmp: Path, text: str, encoding: str = "utf-8") -> list[Path]:
    path = tmp / "records.csv"
    path.write_bytes(text.encode(encoding))
    return [path]


def _flat_header(extra: str = "") -> str:
    return ";".join([ID_COLUMN, *RECORD_COLUMNS]) + extra


def _flat_wrong_separator(folder: Path, tmp: Path) -> list[Path]:
    return _flat(folder, tmp, _flat_header().replace(";", "\t") + "\n")


def _flat_rows_wrong_separator(folder: Path, tmp: Path) -> list[Path]:
    rows = pd.read_csv(ROOT / "tests/data/baac/2021/lieux-2021.csv", sep=";", dtype=str).head(3)
    return _flat(folder, tmp, _flat_header() + "\n" + rows.to_csv(index=False, header=False))


def _flat_empty(folder: Path, tmp: Path) -> list[Path]:
    return _flat(folder, tmp, "")


def _flat_header_only(folder: Path, tmp: Path) -> list[Path]:
    return _flat(folder, tmp, _flat_header() + "\n\n")


def _flat_missing_column(folder: Path, tmp: Path) -> list[Path]:
    return _flat(folder, tmp, _flat_header().replace(";vma;", ";vmax;") + "\n")


def _flat_duplicate_column(folder: Path, tmp: Path) -> list[Path]:
    return _flat(folder, tmp, _flat_header(";LUM") + "\n")


def _zip_unrelated(folder: Path, tmp: Path) -> list[Path]:
    archive = tmp / "baac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"2021/{f.name}")
        zf.writestr("2021/LISEZMOI.txt", "notes")
    return [archive]


def _zip_two_years_nested(folder: Path, tmp: Path) -> list[Path]:
    archive = tmp / "baac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for year in (2020, 2021):
            for f in (ROOT / "tests/data/baac" / str(year)).iterdir():
                zf.write(f, f"data/{year}/{f.name}")
    return [archive]


def _zip_traversal(folder: Path, tmp: Path) -> list[Path]:
    archive = tmp / "baac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../lieux-2021.csv", "x")
    return [archive]


def _not_a_zip(folder: Path, tmp: Path) -> list[Path]:
    archive = tmp / "baac.zip"
    archive.write_text("not a zip")
    return [archive]


def _no_such_path(folder: Path, tmp: Path) -> list[Path]:
    return [tmp / "nowhere"]


def _unknown_file(folder: Path, tmp: Path) -> list[Path]:
    path = tmp / "notes.csv"
    path.write_text("a;b\n1;2\n")
    return [path]


def _records_and_tables(folder: Path, tmp: Path) -> list[Path]:
    path = tmp / "records.csv"
    path.write_text(_flat_header() + "\n")
    return [folder, path]


BAD_INPUTS = {
    "missing table": (_missing_table, "missing table(s) usagers", None, None),
    "two years mixed (files)": (_two_years, "several years", None, None),
    "two years mixed (rows)": (_rows_of_two_years, "several years", "line 7", "'an'"),
    "raw wrong separator": (_raw_wrong_separator, "wrong separator", "line 1", None),
    "raw latin-1": (_raw_latin1, "not valid UTF-8", "line 2", None),
    "raw empty file": (_raw_empty, "file is empty", None, None),
    "raw header only": (_raw_header_only, "header but no data rows", None, None),
    "raw missing column": (_raw_missing_column, "found 'vmax' instead", "line 1", "'vma'"),
    "raw text in a number": (_raw_text_in_number, "not a number", "line 9", "'vma'"),
    "flat wrong separator": (_flat_wrong_separator, "wrong separator", "line 1", None),
    "flat rows with another separator": (_flat_rows_wrong_separator, "3 of 3 rows rejected", "line 2", None),
    "flat empty file": (_flat_empty, "file is empty", "line 1", None),
    "flat header only": (_flat_header_only, "header but no data rows", "line 2", None),
    "flat missing column": (_flat_missing_column, "found 'vmax' instead", "line 1", "'vma'"),
    "flat duplicate column": (_flat_duplicate_column, "duplicate column", "line 1", "'LUM'"),
    "zip with unrelated file": (_zip_unrelated, "LISEZMOI.txt: unrelated file", None, None),
    "zip with two nested years": (_zip_two_years_nested, "two files for table", None, None),
    "zip path traversal": (_zip_traversal, "unsafe path", None, None),
    "not a zip": (_not_a_zip, "not a readable zip", None, None),
    "no such path": (_no_such_path, "no such file or folder", None, None),
    "unknown file": (_unknown_file, "neither a raw BAAC table", "line 1", None),
    "records mixed with tables": (_records_and_tables, "not both", None, None),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_in_one_line(case: str, trained, extracts: Path, tmp_path: Path, capsys) -> None:
    make, reason, line, column = BAD_INPUTS[case]
    inputs = make(copy_year(extracts, tmp_path), tmp_path)
    out = tmp_path / "out" / "scores.parquet"
    code, err = cli(capsys, *inputs, "-o", out, "--model", trained.model_dir)
    assert code == EXIT_INPUT
    message = error_line(err)
    assert reason in message
    assert "file " in message
    for part in (line, column):
        assert part is None or part in message, message
    assert not out.parent.exists() or outputs(out) == []


def test_output_folder_not_writable(trained, flat_2021: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = cli(capsys, flat_2021, "-o", blocker / "scores.parquet", "--model", trained.model_dir)
    assert code == EXIT_INPUT
    assert "cannot write output folder" in error_line(err) and str(blocker) in err
    code, err = cli(capsys, flat_2021, "-o", tmp_path, "--model", trained.model_dir)
    assert code == EXIT_INPUT
    assert "output is a folder" in error_line(err)


@pytest.mark.slow  # spawned MLflow lookup processes
def test_model_not_found(registry, flat_2021: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores.parquet"
    code, err = cli(capsys, flat_2021, "-o", out, "--model", tmp_path / "no-model")
    assert code == EXIT_MODEL and "no model at" in error_line(err)
    code, err = cli(capsys, flat_2021, "-o", out, "--model", "@nonexistent")
    assert code == EXIT_MODEL and "nonexistent" in error_line(err)
    assert outputs(out) == []


def test_arguments(capsys, tmp_path: Path) -> None:
    for bad in (
        ["--max-reject-rate", "2"],
        ["--max-reject-rate", "lots"],
        ["--block-size", "10"],
        ["--stage"],
        [],  # no INPUT
    ):
        with pytest.raises(SystemExit) as exc:
            main([*bad, str(tmp_path), "-o", str(tmp_path / "x.parquet")] if bad else ["-o", "x.parquet"])
        assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])  # no --output
    assert exc.value.code == 2 and "--output" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--max-reject-rate" in capsys.readouterr().out


def test_orchestrator_raises_input_error(trained, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        score_paths([tmp_path / "missing.csv"], trained.model)
    with pytest.raises(InputError, match="no input"):
        score_paths([], trained.model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no files found"):
        score_paths([tmp_path / "empty"], trained.model)


@pytest.mark.slow  # scores the full bundled year
def test_dvc_stage_command_scores_the_bundled_year(trained, tmp_path: Path, capsys) -> None:
    """The stage's command line, its ${score.year} filled in from params.yaml as DVC does."""
    year = yaml.safe_load((ROOT / "params.yaml").read_text())["score"]["year"]
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["score"]
    argv = stage["cmd"].replace("${score.year}", str(year)).split()[3:]
    assert argv == [f"data/bundled/baac/{year}", "--output", f"data/predictions/{year}.parquet", "--source", "dvc"]
    assert "data/bundled/baac/${score.year}" in stage["deps"]
    out = tmp_path / f"{year}.parquet"
    code, err = cli(capsys, ROOT / argv[0], "--output", out, "--model", trained.model_dir, *argv[3:])
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {f"{year}.parquet", f"{year}.rejects.csv", f"{year}.summary.json"}


@pytest.mark.slow  # a real `python -m pipeline.score` process
@pytest.mark.usefixtures("job_defaults")
def test_subprocess_bad_input_exit_code(trained, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.score", tmp_path / "missing", "-o", out, "--model", trained.model_dir],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == EXIT_INPUT
    assert proc.stderr.strip().splitlines()[-1] == f"error: file {tmp_path / 'missing'}: no such file or folder"
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------
# the model lookup in a child process


@pytest.mark.slow  # a real Python process and its MLflow lookup child
@pytest.mark.usefixtures("job_defaults")
def test_job_process_never_imports_mlflow_or_matplotlib(registry, trained, extracts: Path, tmp_path) -> None:
    """The registry lookup runs in a child process; the probabilities stay those of ``evaluate``."""
    out = tmp_path / "scores.parquet"
    code = f"""
import sys
from pipeline.batch.cli import main
code = main([{str(extracts / "2021")!r}, "-o", {str(out)!r}, "--n-jobs", "1"])
heavy = sorted(m for m in ("mlflow", "matplotlib") if m in sys.modules)
print(code, heavy, "xgboost" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.split("\n")[0] == "0 [] True", proc.stderr
    assert "Downloading artifacts" not in proc.stderr
    evaluated = pd.read_parquet(trained.reports / "predictions_test.parquet")
    assert (pd.read_parquet(out)["proba"].to_numpy() == evaluated["proba"].to_numpy()).all()


def test_a_lookup_process_that_dies_is_reported() -> None:
    died: Future[Any] = Future()
    died.set_exception(BrokenProcessPool("killed"))
    with pytest.raises(ModelUnavailable, match="lookup process died"):
        loading._load("models:/m@champion", died, 1, None, 0.0)


@pytest.mark.slow  # spawns (then kills) the MLflow lookup process
def test_bad_input_stops_the_lookup(registry, tmp_path: Path, capsys, monkeypatch) -> None:
    """Bad input is reported at once: the MLflow lookup still running is killed, its folder removed."""
    folders: list[str] = []
    temporary = tempfile.TemporaryDirectory

    def spy(*args: Any, **kwargs: Any) -> tempfile.TemporaryDirectory[str]:
        folder = temporary(*args, **kwargs)
        folders.append(folder.name)
        return folder

    monkeypatch.setattr(loading.tempfile, "TemporaryDirectory", spy)
    empty = tmp_path / "records.csv"
    empty.write_text("")
    code, err = cli(capsys, empty, "-o", tmp_path / "scores.parquet")
    assert code == EXIT_INPUT and "file is empty" in error_line(err)
    assert len(folders) == 1 and not Path(folders[0]).exists()
    deadline = time.monotonic() + 10  # the killed worker is reaped by the executor's own thread
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []
