"""Tests of pipeline.codebook against the bundled official BAAC 2020/2021 files."""

import csv
import gzip
import io
from pathlib import Path

import pytest

from pipeline import codebook as cb

BAAC_DIR = Path(__file__).resolve().parents[2] / "data" / "bundled" / "baac"
YEARS = ("2020", "2021")
# data.gouv.fr publishes the 2021 file as "carcteristiques-2021.csv.gz" (sic).
FILE_PREFIXES = {
    "caracteristiques": ("caracteristiques", "carcteristiques"),
    "lieux": ("lieux",),
    "vehicules": ("vehicules",),
    "usagers": ("usagers",),
}
CODED = sorted(key for key, col in cb.COLUMNS.items() if col.codes)


def _table_file(year: str, table: str) -> Path:
    """Return the bundled gzipped CSV of one table and year."""
    found = [path for prefix in FILE_PREFIXES[table] for path in (BAAC_DIR / year).glob(f"{prefix}-{year}.csv.gz")]
    assert len(found) == 1, f"expected one {table} file for {year}, found {found}"
    return found[0]


def _read(year: str, table: str) -> tuple[list[str], dict[str, set[str]]]:
    """Return the header and the distinct raw values of each coded column."""
    with gzip.open(_table_file(year, table), "rb") as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=";")
        header = next(reader)
        wanted = {
            i: name
            for i, name in enumerate(header)
            if f"{table}.{name}" in cb.COLUMNS and cb.COLUMNS[f"{table}.{name}"].codes
        }
        values: dict[str, set[str]] = {name: set() for name in wanted.values()}
        for row in reader:
            if not row:  # some files end with a blank line
                continue
            assert len(row) == len(header), f"{table} {year}: bad row {row}"
            for i, name in wanted.items():
                values[name].add(row[i])
    return header, values


@pytest.fixture(scope="module")
def real_data() -> dict[tuple[str, str], tuple[list[str], dict[str, set[str]]]]:
    """Headers and distinct coded values of the eight bundled files."""
    return {(y, t): _read(y, t) for y in YEARS for t in cb.TABLES}


@pytest.mark.slow  # reads the eight full-year bundled files
@pytest.mark.parametrize("year", YEARS)
@pytest.mark.parametrize("table", cb.TABLES)
def test_headers_match_codebook_columns(
    real_data: dict[tuple[str, str], tuple[list[str], dict[str, set[str]]]],
    year: str,
    table: str,
) -> None:
    header, _ = real_data[(year, table)]
    assert tuple(header) == tuple(cb.SCHEMA[table])
    assert [k for k in cb.COLUMNS if k.startswith(f"{table}.")] == [f"{table}.{name}" for name in header]


@pytest.mark.slow  # reads the eight full-year bundled files
@pytest.mark.parametrize("year", YEARS)
@pytest.mark.parametrize("table", cb.TABLES)
def test_real_codes_are_in_codebook(
    real_data: dict[tuple[str, str], tuple[list[str], dict[str, set[str]]]],
    year: str,
    table: str,
) -> None:
    _, values = real_data[(year, table)]
    assert values, f"no coded column found in {table} {year}"
    bad: dict[str, set[str]] = {}
    for name, raws in values.items():
        key = f"{table}.{name}"
        allowed = cb.allowed(key)
        for raw in raws:
            code = cb.parse_code(key, raw)
            if code is None or code not in allowed:
                bad.setdefault(key, set()).add(raw)
    assert not bad, f"values outside the codebook in {year}: {bad}"


@pytest.mark.slow  # reads the eight full-year bundled files
def test_every_coded_column_is_checked(
    real_data: dict[tuple[str, str], tuple[list[str], dict[str, set[str]]]],
) -> None:
    for year in YEARS:
        seen = {f"{t}.{n}" for t in cb.TABLES for n in real_data[(year, t)][1]}
        assert seen == set(CODED)


@pytest.mark.slow  # reads the eight full-year bundled files
def test_undocumented_additions_occur_in_real_data(
    real_data: dict[tuple[str, str], tuple[list[str], dict[str, set[str]]]],
) -> None:
    """Each code added beyond the codebook must really be needed by the data."""
    needed = {key: set(codes) for key, codes in cb.UNDOCUMENTED_CODES.items()}
    for key in cb.UNDOCUMENTED_MISSING:
        needed.setdefault(key, set()).add(-1)
    for key, codes in needed.items():
        table, name = key.split(".")
        seen = {cb.parse_code(key, raw) for year in YEARS for raw in real_data[(year, table)][1][name]}
        assert codes <= seen, key


def test_column_metadata() -> None:
    assert len(cb.COLUMNS) == sum(len(c) for c in cb.SCHEMA.values())
    for key, col in cb.COLUMNS.items():
        assert key == f"{col.table}.{col.name}" == col.key
        assert col.table in cb.TABLES
        assert col.fr and col.en and "\n" not in col.fr
        for code, (fr, en) in col.codes.items():
            assert isinstance(code, int)
            assert fr.strip() == fr and fr
            assert en.strip() == en and en
    assert len(CODED) == 31
    assert cb.CODEBOOK_VERSION.startswith("ONISR")


def test_missing_code_handling() -> None:
    for key in cb.UNDOCUMENTED_MISSING:
        assert cb.codes(key)[-1] == cb.NOT_RECORDED
    assert -1 in cb.allowed("atm")  # documented -1
    assert -1 not in cb.allowed("agg")  # never used, not documented
    assert cb.allowed("usagers.trajet") >= {-1, 0}


def test_specific_codes() -> None:
    assert cb.allowed("catv") >= {0, 1, 7, 10, 99}
    assert cb.label("catv", 7) == "VL seul"
    assert cb.allowed("place") == frozenset({-1, *range(1, 11)})
    assert cb.label("place", 1, "en").startswith("Driver")
    assert cb.label("place", 10) == "Piéton (non applicable)"
    assert cb.ACTP_LETTERS == {"A": 10, "B": 11}
    assert cb.label("actp", 10) == "A – Monte/descend du véhicule"
    assert cb.label("actp", 11) == "B – Inconnue"
    assert cb.allowed("grav") == frozenset({-1, 1, 2, 3, 4})
    assert cb.label("grav", 2, "en") == "Killed"


def test_label_languages() -> None:
    assert cb.label("lum", 1) == "Plein jour"
    assert cb.label("lum", 1, "fr") == "Plein jour"
    assert cb.label("lum", 1, "en") == "Full daylight"
    assert cb.label("lum", 1, "both") == "Plein jour (full daylight)"
    assert cb.label("caracteristiques.lum", 1, "both") == "Plein jour (full daylight)"
    assert cb.label("atm", -1, "both") == "Non renseigné (not recorded)"
    # acronyms and one-letter words keep their case
    assert cb.label("int", 3, "both") == "Intersection en T (T-junction)"
    assert cb.label("actp", 10, "both").endswith("(A - Getting on/off the vehicle)")
    with pytest.raises(ValueError, match="lang"):
        cb.label("lum", 1, "de")
    with pytest.raises(KeyError, match="lum"):
        cb.label("lum", 42)
    with pytest.raises(KeyError):
        cb.label("vma", 50)


def test_qualified_and_bare_names() -> None:
    assert cb.codes("lum") == cb.codes("caracteristiques.lum")
    assert cb.allowed("sexe") == cb.allowed("usagers.sexe") == {-1, 1, 2}
    assert cb.get_column("catv").table == "vehicules"
    assert cb.codes("vehicules.Num_Acc") == {}
    assert cb.allowed("lieux.vma") == frozenset()
    for name in ("Num_Acc", "id_vehicule", "num_veh"):
        with pytest.raises(KeyError, match="qualified"):
            cb.codes(name)
    assert cb.get_column("usagers.id_vehicule").table == "usagers"
    # codes() returns a copy; the codebook itself is read-only
    copy = cb.codes("lum")
    copy[99] = ("x", "y")
    assert 99 not in cb.allowed("lum")
    with pytest.raises(TypeError):
        cb.COLUMNS["caracteristiques.lum"].codes[99] = ("x", "y")  # type: ignore[index]


@pytest.mark.parametrize("name", ["nope", "usagers.nope", "nope.lum", "LUM", "caracteristiques.grav"])
def test_unknown_column(name: str) -> None:
    with pytest.raises(KeyError, match="Unknown BAAC column"):
        cb.codes(name)
    with pytest.raises(KeyError, match="Unknown BAAC column"):
        cb.allowed(name)


def test_unknown_column_suggests() -> None:
    with pytest.raises(KeyError, match=r"did you mean.*lum"):
        cb.codes("lumm")


def test_parse_code() -> None:
    assert cb.parse_code("lum", " -1") == -1
    assert cb.parse_code("catv", "07") == 7
    assert cb.parse_code("actp", "A") == 10
    assert cb.parse_code("actp", " B ") == 11
    assert cb.parse_code("grav", "") is None
    with pytest.raises(ValueError):
        cb.parse_code("catu", "A")
