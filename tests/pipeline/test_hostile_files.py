"""Odd, oversized and hostile files, through the API (lifespan, TestClient) and the batch CLI:
every one gets a clear 4xx (413 naming the setting for sizes) or exit 2 in one line, with no
traceback, no 5xx and no output left; a full TMPDIR is reported as what it is (507, exit 4)."""

from __future__ import annotations

import errno
import gzip
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from pipeline.batch.cli import main
from pipeline.cli import EXIT_INPUT, EXIT_IO
from tests.api_helpers import wait_ready

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = ROOT / "tests" / "data" / "upload" / "accidents-2021-extract.csv"  # 150 real 2021 records
MAX_ERROR_BODY = 64 * 1024
ROWS_CAP = 400
EXPANDED_MB = 16.0  # room for one 10 MB cell


def real_csv() -> bytes:
    return EXTRACT.read_bytes()


def lines() -> list[bytes]:
    return real_csv().splitlines()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def repeated(times: int, limit: int | None = None) -> bytes:
    """The real extract's rows repeated ``times`` (resampled real records, renumbered)."""
    head, *rows = lines()
    renumbered = [b"%d;%s" % (i, row.split(b";", 1)[1]) for i, row in enumerate((rows * times)[:limit], 1)]
    return b"\n".join([head, *renumbered]) + b"\n"


# --- the classes of odd files: name -> (file name, content)


def cr_only() -> tuple[str, bytes]:
    return "records.csv", b"\r".join(lines()) + b"\r"


def mixed_endings() -> tuple[str, bytes]:
    out = b""
    for i, line in enumerate(lines()):
        out += line + (b"\r\n", b"\n", b"\r")[i % 3]
    return "records.csv", out


def long_first_line() -> tuple[str, bytes]:
    return "records.csv", b"x" * (3 << 20) + b"\n" + b"\n".join(lines()[1:])


def long_header_name() -> tuple[str, bytes]:
    head, *rows = lines()
    return "records.csv", b";".join([head, b"y" * (2 << 20)]) + b"\n" + b"\n".join(r + b";1" for r in rows)


def huge_cell() -> tuple[str, bytes]:
    head, *rows = lines()
    cells = rows[0].split(b";")
    cells[6] = b"9" * (10 << 20)  # dep: a 10 MB cell
    return "records.csv", b"\n".join([head, b";".join(cells), *rows[1:]]) + b"\n"


def binary_named_csv() -> tuple[str, bytes]:
    return "records.zip", zipped({"records.csv": bytes(range(256)) * 64})


def zip_named_csv_gz() -> tuple[str, bytes]:
    return "records.zip", zipped({"records.csv.gz": zipped({"records.csv": real_csv()})})


def gzip_truncated() -> tuple[str, bytes]:
    return "records.csv.gz", gzip.compress(real_csv())[:2000]


def long_member_name() -> tuple[str, bytes]:
    return "records.zip", zipped({"r" * 300 + ".csv": real_csv()})


def empty_zip() -> tuple[str, bytes]:
    return "records.zip", zipped({})


def many_members() -> tuple[str, bytes]:
    return "records.zip", zipped({f"part{i}.csv": b"an;mois\n2021;6\n" for i in range(10_000)})


def nested_zip() -> tuple[str, bytes]:
    return "records.zip", zipped({"inner.zip": zipped({"records.csv": real_csv()})})


def utf16() -> tuple[str, bytes]:
    return "records.csv", real_csv().decode("utf-8").encode("utf-16")


def empty_file() -> tuple[str, bytes]:
    return "records.csv", b""


ODD: dict[str, Callable[[], tuple[str, bytes]]] = {
    f.__name__: f
    for f in (
        long_first_line,
        long_header_name,
        binary_named_csv,
        zip_named_csv_gz,
        gzip_truncated,
        long_member_name,
        empty_zip,
        many_members,
        nested_zip,
        empty_file,
        utf16,
    )
}
# Files that are odd but hold good records: they score.
TOLERATED: dict[str, Callable[[], tuple[str, bytes]]] = {f.__name__: f for f in (cr_only, mixed_endings)}


def gzip_bomb() -> tuple[str, bytes]:
    """Real rows gzipped: a few hundred KB that expand past EXPANDED_MB."""
    return "records.csv.gz", gzip.compress(repeated(600), 9)


def gz_in_zip_bomb() -> tuple[str, bytes]:
    return "records.zip", zipped({"records.csv.gz": gzip.compress(repeated(600), 9)})


def too_many_rows() -> tuple[str, bytes]:
    return "records.csv", repeated(3)  # 450 rows


TOO_LARGE: dict[str, tuple[Callable[[], tuple[str, bytes]], str]] = {
    "gzip_bomb": (gzip_bomb, "API_MAX_EXPANDED_MB"),
    "gz_in_zip_bomb": (gz_in_zip_bomb, "API_MAX_EXPANDED_MB"),
    "too_many_rows": (too_many_rows, "API_MAX_UPLOAD_ROWS"),
}


# --- the API


@pytest.fixture(scope="module")
def client(registry) -> Iterator[TestClient]:
    settings = Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        API_MAX_UPLOAD_MB=20,
        API_MAX_EXPANDED_MB=EXPANDED_MB,
        API_MAX_UPLOAD_ROWS=ROWS_CAP,
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def post(client: TestClient, name: str, content: bytes) -> tuple[int, dict[str, object], int]:
    response = client.post("/score/file", files={"file": (name, content, "application/octet-stream")})
    return response.status_code, response.json(), len(response.content)


def test_settings_defaults_and_names() -> None:
    settings = Settings(_env_file=None)
    assert settings.max_upload_rows == 1_000_000 and settings.max_expanded_bytes == 1000 << 20
    with pytest.raises(ValueError, match="API_MAX_UPLOAD_ROWS"):
        Settings(_env_file=None, API_MAX_UPLOAD_ROWS=0)


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_files_get_a_clear_4xx(client: TestClient, case: str) -> None:
    name, content = ODD[case]()
    start = time.monotonic()
    status, body, size = post(client, name, content)
    assert time.monotonic() - start < 10, case
    assert 400 <= status < 500 and status != 413, (case, status, body)
    assert size < MAX_ERROR_BODY, (case, size)
    detail = str(body["detail"])
    assert "/tmp" not in detail and "Traceback" not in detail, detail
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("case", sorted(TOLERATED))
def test_odd_line_endings_still_score(client: TestClient, case: str) -> None:
    name, content = TOLERATED[case]()
    status, body, _ = post(client, name, content)
    assert status == 200, body
    counts = body["summary"]["counts"]  # type: ignore[index]
    assert counts["scored"] == len(lines()) - 1 and counts["rejected"] == 0


def test_a_ten_megabyte_cell_is_not_echoed_whole(client: TestClient) -> None:
    status, body, size = post(client, *huge_cell())
    assert status == 200, body  # one rejected cell among 150 rows
    reject = body["rejects"][0]  # type: ignore[index]
    assert reject["column"] == "dep" and reject["value"].endswith(f"({10 << 20} characters)")
    assert len(reject["value"]) < 300 and size < 1 << 20  # listed clipped; the download has it whole


@pytest.mark.parametrize("case", sorted(TOO_LARGE))
def test_limits_answer_413_naming_the_setting(client: TestClient, case: str) -> None:
    make, setting = TOO_LARGE[case]
    name, content = make()
    status, body, _ = post(client, name, content)
    assert status == 413, body
    detail = str(body["detail"])
    assert setting in detail and f"raise {setting}" in detail, detail


def test_rows_at_the_cap_are_accepted(client: TestClient) -> None:
    status, body, _ = post(client, "records.csv", repeated(3, ROWS_CAP))
    assert status == 200, body
    assert body["rows_total"] == ROWS_CAP


# --- the CLI


@pytest.fixture
def no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """No scoring run (MONITOR_RECORD=false): each in-process run would spawn the MLflow logging
    process (seconds of imports); recording with bad input is tested in test_monitoring_runs."""
    monkeypatch.setenv("MONITOR_RECORD", "false")


def write_case(tmp_path: Path, make: Callable[[], tuple[str, bytes]]) -> Path:
    name, content = make()
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(content)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], path: Path, out: Path, model: Path) -> tuple[int, str]:
    code = main([str(path), "--output", str(out), "--model", str(model), "--n-jobs", "1"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(ODD))
@pytest.mark.usefixtures("no_record")
def test_odd_files_exit_2_in_one_line(trained, tmp_path: Path, capsys, case: str) -> None:
    path = write_case(tmp_path, ODD[case])
    out = tmp_path / "out" / "scores.parquet"
    code, err = run_cli(capsys, path, out, trained.model_dir)
    assert code == EXIT_INPUT, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and len(last) < 3000, last[:500]
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.usefixtures("no_record")
def test_a_ten_megabyte_cell_in_the_cli_message_is_clipped(trained, tmp_path: Path, capsys) -> None:
    path = write_case(tmp_path, huge_cell)
    out = tmp_path / "out" / "scores.parquet"
    code = main([str(path), "-o", str(out), "--model", str(trained.model_dir), "--max-reject-rate", "0"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == EXIT_INPUT and "column 'dep'" in last and f"({10 << 20} characters)" in last
    assert len(last) < 1000, len(last)


@pytest.mark.usefixtures("no_record")
def test_full_tmpdir_exits_4(trained, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(tmp_path, lambda: ("records.zip", zipped({"records.csv": real_csv()})))
    real_open = Path.open

    def full_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and "score-zip-" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", full_open)
    out = tmp_path / "out" / "scores.parquet"
    code, err = run_cli(capsys, path, out, trained.model_dir)
    assert code == EXIT_IO, err
    assert "no space left in TMPDIR" in err.strip().splitlines()[-1]
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_cli_subprocess_never_shows_a_traceback(trained, tmp_path: Path) -> None:
    """``python -m pipeline.score`` on each odd file, all at once: exit 2, no traceback."""
    jobs = {}
    for case, make in sorted(ODD.items()):
        folder = tmp_path / case
        folder.mkdir()
        path = write_case(folder, make)
        jobs[case] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.score", path, "-o", folder / "out.parquet", "--model", trained.model_dir],
            cwd=ROOT,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
    results = {case: (job.wait(timeout=300), job.stderr.read() if job.stderr else "") for case, job in jobs.items()}
    for case, (code, err) in results.items():
        assert code == EXIT_INPUT and "Traceback" not in err, (case, code, err[-2000:])
        assert not (tmp_path / case / "out.parquet").exists()
