"""Stage ``ingest``: find the four BAAC tables of each year, read them and type them.

The raw files change name, line ends and small conventions from year to year; this
module absorbs all of that so that every later stage sees the same typed tables.
"""

from __future__ import annotations

import difflib
import gzip
import io
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pooch
import requests

from pipeline.codebook import ACTP_LETTERS, MISSING_TOKENS, SCHEMA, TABLES
from pipeline.config import BUNDLED_DIR, CACHE_DIR, INTERIM_DIR, params
from pipeline.errors import InputError
from pipeline.storage import write_parquet_atomic

log = logging.getLogger(__name__)

# Later publications renamed a few headers; map them back to the 2020/2021 names.
COLUMN_ALIASES: Mapping[str, str] = {"accident_id": "Num_Acc", "num_acc": "Num_Acc"}

_TABLE_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "caracteristiques": re.compile(r"(?<![a-z])(carac|caract|carct)"),
    "lieux": re.compile(r"(?<![a-z])lieux"),
    "vehicules": re.compile(r"(?<![a-z])v[eé]hicules?"),
    "usagers": re.compile(r"(?<![a-z])usagers?"),
}
_YEAR = re.compile(r"(?<!\d)(19|20)(\d{2})(?!\d)")

# Stable data.gouv.fr resource links, and the official sizes/sha1 where known.
DATAGOUV_URLS: Mapping[int, Mapping[str, str]] = {
    2019: {
        "caracteristiques": "e22ba475-45a3-46ac-a0f7-9ca9ed1e283a",
        "lieux": "2ad65965-36a1-4452-9c08-61a6c874e3e6",
        "usagers": "36b1b7b3-84b4-4901-9163-59ae8a9e3028",
        "vehicules": "780cd335-5048-4bd6-a841-105b44eb2667",
    },
    2020: {
        "caracteristiques": "07a88205-83c1-4123-a993-cba5331e8ae0",
        "lieux": "e85c41f7-d4ea-4faf-877f-ab69a620ce21",
        "usagers": "78c45763-d170-4d51-a881-e3147802d7ee",
        "vehicules": "a66be22f-c346-49af-b196-71df24702250",
    },
    2021: {
        "caracteristiques": "85cfdc0c-23e4-4674-9bcd-79a970d7269b",
        "lieux": "8a4935aa-38cd-43af-bf10-0209d6d17434",
        "usagers": "ba5a1956-7e82-41b7-a602-89d7dd484d7a",
        "vehicules": "0bb5953a-25d8-46f8-8c25-b5c2f5ba905e",
    },
    2022: {
        "caracteristiques": "5fc299c0-4598-4c29-b74c-6a67b0cc27e7",
        "lieux": "a6ef711a-1f03-44cb-921a-0ce8ec975995",
        "usagers": "62c20524-d442-46f5-bfd8-982c59763ec8",
        "vehicules": "c9742921-4427-41e5-81bc-f13af8bc31a0",
    },
    2023: {
        "caracteristiques": "104dbb32-704f-4e99-a71e-43563cb604f2",
        "lieux": "8bef19bf-a5e4-46b3-b5f9-a145da4686bc",
        "usagers": "68848e2a-28dd-4efc-9d5f-d512f7dbe66f",
        "vehicules": "146a42f5-19f0-4b3e-a887-5cd8fbef057b",
    },
    2024: {
        "caracteristiques": "83f0fb0e-e0ef-47fe-93dd-9aaee851674a",
        "lieux": "228b3cda-fdfb-4677-bd54-ab2107028d2d",
        "usagers": "f57b1f58-386d-4048-8f78-2ebe435df868",
        "vehicules": "fd30513c-6b11-4a56-b6dc-5ac87728794b",
    },
}
DATAGOUV_BASE = "https://www.data.gouv.fr/fr/datasets/r/"
DATAGOUV_SHA1: Mapping[tuple[int, str], str] = {
    (2019, "caracteristiques"): "c1008e98ae4d6433cc79b16a5dbf95ffed116d55",
    (2019, "lieux"): "bab1d2f6a2799a24fd59bbc29b2bae4d6783a81a",
    (2019, "usagers"): "8fba99e9246ee57454e726013ec4f1895831f6c3",
    (2019, "vehicules"): "2841608bf5e40943578570edd53f31357d46a975",
    (2020, "caracteristiques"): "aecac31214d34667a7a2c8ab179fbd25d1fe0794",
    (2020, "lieux"): "73a8a21443641b919e8af2489e27dca714f60daa",
    (2020, "usagers"): "2c99198f42ade793dac840cad965a563f984988c",
    (2020, "vehicules"): "1dff8742e6af1d06a9e288d5abedaeaa859cb6d1",
    (2022, "usagers"): "df4761c5df6837b109ce80d73014a78800871b9e",
}


@dataclass(frozen=True)
class TableFile:
    """One raw table file, identified from its name."""

    table: str
    year: int | None
    path: Path


def identify(path: Path) -> TableFile:
    """Tell which table (and year) a file holds from its name, tolerant of the real variants."""
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        raise InputError("not a .csv or .csv.gz file", file=path)
    stem = name.removesuffix(".gz").removesuffix(".csv")
    matches = [t for t, pattern in _TABLE_PATTERNS.items() if pattern.search(stem)]
    if len(matches) != 1:
        raise InputError(
            "file name matches no BAAC table (expected caracteristiques, lieux, vehicules "
            "or usagers, e.g. carcteristiques-2021.csv or Lieux_2024.csv)",
            file=path,
        )
    years = _YEAR.findall(stem)
    year = int("".join(years[-1])) if years else None
    return TableFile(matches[0], year, path)


def find_tables(paths: Iterable[Path]) -> dict[str, TableFile]:
    """Map each of the four tables to one file, from a folder or a list of files."""
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise InputError("no such file or folder", file=p)
        if p.is_dir():
            files.extend(f for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith("."))
        else:
            files.append(p)
    found: dict[str, TableFile] = {}
    for f in files:
        tf = identify(f)
        if tf.table in found:
            raise InputError(
                f"two files for table {tf.table!r}: {found[tf.table].path.name} and {f.name}",
                file=f,
            )
        found[tf.table] = tf
    missing = [t for t in TABLES if t not in found]
    if missing:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"missing table(s) {', '.join(missing)} among the given files", file=where)
    years = {tf.year for tf in found.values() if tf.year is not None}
    if len(years) > 1:
        raise InputError(
            f"files from several years mixed together: {sorted(years)}",
            file=", ".join(tf.path.name for tf in found.values()),
        )
    return found


def read_text(path: Path) -> str:
    """Read a (possibly gzipped) file as strict UTF-8, with a clear error otherwise."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"corrupt gzip data ({exc})", file=path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); the file looks like latin-1, re-save it as UTF-8",
            file=path,
            rows=[line],
        ) from exc
    if not text.strip():
        raise InputError("file is empty", file=path)
    return text


def parse_csv(text: str, path: Path, expected: Mapping[str, str]) -> pd.DataFrame:
    """Parse ``;``-separated text into a frame of stripped strings with the expected columns."""
    header = text.lstrip().split("\n", 1)[0]
    if ";" not in header:
        sep = next((s for s in (",", "\t", "|") if s in header), None)
        hint = f" (found {sep!r})" if sep else ""
        raise InputError(f"wrong separator: expected ';'{hint}", file=path, rows=[1])
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=";",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError(f"malformed CSV: {exc}", file=path, rows=[int(m.group(1))] if m else []) from exc
    frame.columns = [COLUMN_ALIASES.get(c.strip().lower(), c.strip()) for c in frame.columns]
    lower = {c.lower(): c for c in frame.columns}
    renames = {lower[k.lower()]: k for k in expected if k.lower() in lower and lower[k.lower()] != k}
    frame = frame.rename(columns=renames)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        col = missing[0]
        close = difflib.get_close_matches(col, list(frame.columns), n=1)
        hint = f"; found {close[0]!r} instead (renamed?)" if close else ""
        raise InputError(f"missing column{hint}", file=path, column=col, rows=[1])
    if frame.empty:
        raise InputError("header but no data rows", file=path)
    extra = [c for c in frame.columns if c not in expected]
    if extra:
        log.info("%s: ignoring extra columns %s", path.name, extra)
    return frame[list(expected)]


def _bad_rows(mask: pd.Series) -> list[int]:
    # +2: one for the header line, one because lines are 1-based.
    return [int(i) + 2 for i in mask[mask].index[:20]]


def type_column(values: pd.Series, kind: str, path: Path, column: str) -> pd.Series:
    """Strip and convert one raw string column to its type; text in a number column is an error."""
    s = values.str.strip().str.replace("\u00a0", "", regex=False)
    if kind == "str":
        return s.where(~s.isin(MISSING_TOKENS)).astype("string")
    if kind == "vid":
        s = s.str.replace(" ", "", regex=False)
        return s.where(s != "").astype("string")
    if kind == "pr":
        s = s.where(s != "(1)", "")
    if kind == "float":
        s = s.str.replace(",", ".", regex=False)
    if column == "actp":
        s = s.replace({letter: str(code) for letter, code in ACTP_LETTERS.items()})
    s = s.where(~s.isin(MISSING_TOKENS))
    number = pd.to_numeric(s, errors="coerce")
    bad = number.isna() & s.notna()
    if bad.any():
        example = s[bad].iloc[0]
        raise InputError(f"not a number: {example!r}", file=path, column=column, rows=_bad_rows(bad))
    if kind == "float":
        return number.astype("float64")
    fractional = number.notna() & (number % 1 != 0)
    if fractional.any():
        raise InputError(
            f"not an integer: {number[fractional].iloc[0]!r}",
            file=path,
            column=column,
            rows=_bad_rows(fractional),
        )
    dtype = {"key": "int64", "code": "Int16", "int": "Int32", "pr": "Int32"}[kind]
    if kind == "key":
        if number.isna().any():
            raise InputError("missing id", file=path, column=column, rows=_bad_rows(number.isna()))
        return number.astype("int64")
    return number.astype(dtype)


def read_table(path: Path, table: str) -> pd.DataFrame:
    """Read one raw BAAC table file into a typed frame."""
    expected = SCHEMA[table]
    frame = parse_csv(read_text(path), path, expected)
    typed = {col: type_column(frame[col], kind, path, col) for col, kind in expected.items()}
    return pd.DataFrame(typed)


def read_year(files: Mapping[str, TableFile]) -> dict[str, pd.DataFrame]:
    """Read the four tables of one year and check they are one year."""
    tables = {t: read_table(files[t].path, t) for t in TABLES}
    carac = tables["caracteristiques"]
    years = carac["an"].dropna().unique()
    if len(years) > 1:
        first = carac["an"].iloc[0]
        other = carac["an"] != first
        raise InputError(
            f"several years mixed together: {sorted(int(y) for y in years)}",
            file=files["caracteristiques"].path,
            column="an",
            rows=_bad_rows(other),
        )
    return tables


def download(url: str, dest: Path, sha1: str | None = None, timeout: float = 60.0, retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` (pooch: atomic, retried), checking sha1 when known; reuse a valid cache."""
    fetcher = pooch.create(
        path=dest.parent,
        base_url="",
        registry={dest.name: f"sha1:{sha1}" if sha1 else None},
        urls={dest.name: url},
        retry_if_failed=retries,
    )
    try:
        return Path(fetcher.fetch(dest.name, downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False)))
    except ValueError as exc:  # pooch's hash mismatch; the partial download is already removed
        raise InputError(f"checksum mismatch: {exc}", file=url) from exc
    except (OSError, requests.RequestException) as exc:
        raise InputError(f"download failed after {retries} retries: {exc}", file=url) from exc


def datagouv_files(year: int, cache: Path = CACHE_DIR, base_url: str = DATAGOUV_BASE) -> list[Path]:
    """Download (or reuse from the cache) the four official files of ``year``."""
    if year not in DATAGOUV_URLS:
        raise InputError(f"no known data.gouv.fr resources for year {year}", file=base_url)
    out = []
    for table, uuid in DATAGOUV_URLS[year].items():
        dest = cache / str(year) / f"{table}-{year}.csv"
        out.append(download(base_url + uuid, dest, DATAGOUV_SHA1.get((year, table))))
    return out


def source_files(year: int, source: str, bundled: Path | None = None) -> list[Path]:
    """The raw files for a year, from the bundled copy (``BUNDLED_DIR`` by default) or data.gouv.fr."""
    if source == "bundled":
        folder = (bundled or BUNDLED_DIR) / str(year)
        if not folder.is_dir():
            raise InputError(f"no bundled data for year {year}", file=folder)
        return [folder]
    return datagouv_files(year)


def load_interim(year: int, folder: Path = INTERIM_DIR) -> dict[str, pd.DataFrame]:
    """Typed tables written by ``ingest``."""
    return {t: pd.read_parquet(folder / str(year) / f"{t}.parquet") for t in TABLES}


def ingest_year(year: int, source: str, out_dir: Path) -> dict[str, int]:
    """Read one year's raw tables and write them as typed Parquet; returns row counts."""
    files = find_tables(source_files(year, source))
    tables = read_year(files)
    counts = {}
    for table, frame in tables.items():
        write_parquet_atomic(frame, out_dir / str(year) / f"{table}.parquet")
        counts[table] = len(frame)
    return counts


def main() -> None:
    """DVC entry point: ingest every year in params.yaml."""
    p = params().ingest
    for year in p.years:
        counts = ingest_year(year, p.source, INTERIM_DIR)
        log.info("ingested %s: %s", year, counts)


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
