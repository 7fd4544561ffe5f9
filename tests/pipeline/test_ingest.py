"""Reading the raw BAAC tables: names, quirks, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline import codebook, ingest, raw_tables
from pipeline.errors import InputError


@pytest.mark.parametrize(
    ("name", "table", "year"),
    [
        ("caracteristiques-2020.csv", "caracteristiques", 2020),
        ("carcteristiques-2021.csv", "caracteristiques", 2021),
        ("carcteristiques-2022.csv", "caracteristiques", 2022),
        ("caract-2023.csv", "caracteristiques", 2023),
        ("Caract_2024.csv", "caracteristiques", 2024),
        ("Lieux_2024.csv", "lieux", 2024),
        ("lieux-2021.csv.gz", "lieux", 2021),
        ("Vehicules_2024.csv", "vehicules", 2024),
        ("vehicules-2019.csv", "vehicules", 2019),
        ("usagers-2022.csv", "usagers", 2022),
        ("Usagers_2024.csv", "usagers", 2024),
        ("20230516_141715_usagers-2021.csv", "usagers", 2021),
        ("data_caracteristiques-2020.csv", "caracteristiques", 2020),
    ],
)
def test_identify_real_file_names(name: str, table: str, year: int) -> None:
    found = raw_tables.identify(Path(name))
    assert (found.table, found.year) == (table, year)


@pytest.mark.parametrize("name", ["accidents-2021.csv", "notes.txt", "README.md", "carac-lieux-2021.csv"])
def test_identify_rejects_unknown_names(name: str) -> None:
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        raw_tables.identify(Path(name))


def test_reads_every_quirk_of_the_2020_extract(extracts: Path) -> None:
    tables = raw_tables.read_year(raw_tables.find_tables([extracts / "2020"]))
    carac, lieux, veh, users = (tables[t] for t in codebook.TABLES)
    # month not zero-padded in 2020, read as an integer
    assert set(carac["mois"].unique()) <= set(range(1, 13))
    # Corsica and overseas departments stay strings
    assert {"2A", "2B"} <= set(carac["dep"])
    # decimal comma and negative values with a leading space
    assert carac["long"].lt(0).any()
    assert carac["lat"].between(-90, 90).all()
    # " -1" codes
    assert (lieux["circ"] == -1).any() or (lieux["v1"] == -1).any()
    # "N/A" is missing text; "(1)" is a missing PR
    assert lieux["v2"].isna().any()
    # non-breaking spaces removed from vehicle ids; CRLF did not leak into values
    assert veh["id_vehicule"].str.fullmatch(r"\d+").all()
    assert not users["etatp"].isna().all()
    # actp letters mapped to codes 10 and 11
    assert {10, 11} <= set(users["actp"].dropna().astype(int))
    assert carac["Num_Acc"].dtype == "int64"


def test_2021_zero_padded_months_and_blank_trailing_line(extracts: Path) -> None:
    tables = raw_tables.read_year(raw_tables.find_tables([extracts / "2021"]))
    raw = (extracts / "2021" / "carcteristiques-2021.csv").read_text(encoding="utf-8")
    assert raw.endswith("\n\n")
    assert '"01"' in raw or '"02"' in raw or '"03"' in raw
    assert len(tables["caracteristiques"]) == raw.strip().count("\n")
    assert (tables["usagers"]["grav"] == -1).any()


def test_gzip_and_plain_give_the_same_table(extracts: Path, tmp_path: Path) -> None:
    plain = extracts / "2020" / "lieux-2020.csv"
    gz = tmp_path / "lieux-2020.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(raw_tables.read_table(plain, "lieux"), raw_tables.read_table(gz, "lieux"))


def _copy_year(extracts: Path, tmp_path: Path, year: int = 2021) -> Path:
    dest = tmp_path / str(year)
    shutil.copytree(extracts / str(year), dest)
    return dest


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def test_missing_table(extracts: Path, tmp_path: Path) -> None:
    folder = _copy_year(extracts, tmp_path)
    (folder / "lieux-2021.csv").unlink()
    with pytest.raises(InputError, match="missing table.*lieux"):
        raw_tables.find_tables([folder])


def test_file_matching_no_table(extracts: Path, tmp_path: Path) -> None:
    folder = _copy_year(extracts, tmp_path)
    (folder / "accidents-2021.csv").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match=r"accidents-2021\.csv.*matches no BAAC table"):
        raw_tables.find_tables([folder])


def test_two_years_mixed(extracts: Path) -> None:
    files = [
        extracts / "2021" / "carcteristiques-2021.csv",
        extracts / "2020" / "lieux-2020.csv",
        extracts / "2021" / "usagers-2021.csv",
        extracts / "2021" / "vehicules-2021.csv",
    ]
    with pytest.raises(InputError, match=r"several years mixed together: \[2020, 2021\]"):
        raw_tables.find_tables(files)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        raw_tables.find_tables([tmp_path / "nope"])


def test_wrong_separator(extracts: Path, tmp_path: Path) -> None:
    folder = _copy_year(extracts, tmp_path)
    path = folder / "lieux-2021.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(";", ","), encoding="utf-8")
    with pytest.raises(InputError) as err:
        raw_tables.read_table(path, "lieux")
    assert "lieux-2021.csv" in str(err.value)
    assert "wrong separator" in str(err.value)
    assert "line 1" in str(err.value)


def test_latin1_file(extracts: Path, tmp_path: Path) -> None:
    folder = _copy_year(extracts, tmp_path)
    path = folder / "carcteristiques-2021.csv"
    text = path.read_text(encoding="utf-8")
    accented = next(i for i, line in enumerate(text.splitlines(), start=1) if any(ord(c) > 127 for c in line))
    path.write_bytes(text.encode("latin-1", errors="replace"))
    with pytest.raises(InputError) as err:
        raw_tables.read_table(path, "caracteristiques")
    assert "not valid UTF-8" in str(err.value)
    assert f"line {accented}" in str(err.value)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "usagers-2021.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="usagers-2021.csv: file is empty"):
        raw_tables.read_table(path, "usagers")


def test_header_without_rows(extracts: Path, tmp_path: Path) -> None:
    path = tmp_path / "usagers-2021.csv"
    path.write_text((extracts / "2021" / "usagers-2021.csv").read_text(encoding="utf-8").splitlines()[0] + "\n")
    with pytest.raises(InputError, match="header but no data rows"):
        raw_tables.read_table(path, "usagers")


def test_missing_column(extracts: Path, tmp_path: Path) -> None:
    path = _copy_year(extracts, tmp_path) / "vehicules-2021.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(";".join(line.split(";")[:-1]) + "\n" for line in lines if line.strip()))
    with pytest.raises(InputError) as err:
        raw_tables.read_table(path, "vehicules")
    assert "column 'occutc'" in str(err.value) and "missing column" in str(err.value)


def test_renamed_column(extracts: Path, tmp_path: Path) -> None:
    path = _copy_year(extracts, tmp_path) / "lieux-2021.csv"
    _edit(path, '"vma"', '"vmax"')
    with pytest.raises(InputError, match=r"column 'vma'.*found 'vmax' instead"):
        raw_tables.read_table(path, "lieux")


def test_text_in_a_numeric_column(extracts: Path, tmp_path: Path) -> None:
    path = _copy_year(extracts, tmp_path) / "lieux-2021.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[3].split(";")
    fields[-1] = '"fifty"\n'
    lines[3] = ";".join(fields)
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(InputError) as err:
        raw_tables.read_table(path, "lieux")
    assert "column 'vma'" in str(err.value) and "line 4" in str(err.value) and "fifty" in str(err.value)


def test_accident_header_alias_of_later_years(extracts: Path, tmp_path: Path) -> None:
    path = _copy_year(extracts, tmp_path) / "carcteristiques-2021.csv"
    _edit(path, '"Num_Acc"', '"Accident_Id"')
    assert len(raw_tables.read_table(path, "caracteristiques")) > 0


def test_extra_columns_are_ignored(extracts: Path, tmp_path: Path) -> None:
    path = _copy_year(extracts, tmp_path) / "usagers-2021.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [line + (';"id_usager"' if i == 0 else ';"1"') for i, line in enumerate(lines) if line.strip()]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    assert "id_usager" not in raw_tables.read_table(path, "usagers").columns


def test_ingest_year_writes_typed_parquet(tmp_path: Path, extracts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "BUNDLED_DIR", extracts)
    counts = ingest.ingest_year(2020, "bundled", tmp_path)
    assert counts["caracteristiques"] == counts["lieux"] > 0
    loaded = raw_tables.load_interim(2020, tmp_path)
    assert loaded["vehicules"]["catv"].dtype == "Int16"
    with pytest.raises(InputError, match="no bundled data for year 1999"):
        ingest.source_files(1999, "bundled", extracts)


@pytest.fixture
def file_server(extracts: Path) -> Iterator[str]:
    """Serve the real extracts over HTTP on 127.0.0.1."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(extracts), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_checks_sha1_and_caches(file_server: str, extracts: Path, tmp_path: Path) -> None:
    src = extracts / "2020" / "lieux-2020.csv"
    sha1 = hashlib.sha1(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "lieux-2020.csv"
    ingest.download(file_server + "2020/lieux-2020.csv", dest, sha1)
    assert dest.read_bytes() == src.read_bytes()
    mtime = dest.stat().st_mtime_ns
    ingest.download(file_server + "2020/lieux-2020.csv", dest, sha1)  # cache hit
    assert dest.stat().st_mtime_ns == mtime
    with pytest.raises(InputError, match="checksum mismatch"):
        # No retries: pooch would wait 1 + 2 + 3 s to fetch the same wrong bytes again.
        ingest.download(file_server + "2020/lieux-2020.csv", tmp_path / "other.csv", "0" * 40, retries=0)
    assert not (tmp_path / "other.csv").exists()
    assert not list(tmp_path.glob("*.part"))


def test_datagouv_source_downloads_the_four_tables(
    file_server: str, extracts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {
        "caracteristiques": "caracteristiques-2020.csv",
        "lieux": "lieux-2020.csv",
        "usagers": "usagers-2020.csv",
        "vehicules": "vehicules-2020.csv",
    }
    monkeypatch.setattr(ingest, "DATAGOUV_URLS", {2020: {t: f"2020/{n}" for t, n in names.items()}})
    monkeypatch.setattr(ingest, "DATAGOUV_SHA1", {})
    paths = ingest.datagouv_files(2020, cache=tmp_path, base_url=file_server)
    tables = raw_tables.read_year(raw_tables.find_tables(paths))
    assert len(tables["usagers"]) > len(tables["caracteristiques"]) > 0
    with pytest.raises(InputError, match="no known data.gouv.fr resources for year 1990"):
        ingest.datagouv_files(1990, cache=tmp_path, base_url=file_server)
