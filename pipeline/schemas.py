"""Pandera schemas of the four typed BAAC tables, built from the official codebook.

Cross-table checks (every user's vehicle exists, every Num_Acc exists in
caracteristiques) are expressed as ``isin`` checks against the keys of the other
tables, so they are reported like any other check.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from pipeline import codebook
from pipeline.records import COM_PATTERN, DEPARTMENTS

# pandas dtype of each column kind of ``codebook.SCHEMA`` once ``ingest`` has typed it.
DTYPES: Mapping[str, str] = {
    "key": "int64",
    "vid": "string",
    "str": "string",
    "code": "Int16",
    "int": "Int32",
    "float": "float64",
    "pr": "Int32",
}


@dataclass(frozen=True)
class Rule:
    """Checks of one column beyond its dtype (and, for a coded column, its codebook codes)."""

    checks: tuple[pa.Check, ...] = ()
    nullable: bool = True
    unique: bool = False


def _range(low: float, high: float, nullable: bool = True, name: str | None = None) -> Rule:
    return Rule((pa.Check.in_range(low, high, name=name),), nullable=nullable)


def _column(table: str, name: str, kind: str, rule: Rule | None) -> pa.Column:
    """A column of ``codebook.SCHEMA``: its dtype, its codebook codes if it has some, and its rule."""
    allowed = sorted(codebook.allowed(f"{table}.{name}")) if kind == "code" else []
    if allowed:
        # A coded column holds codebook codes only; missing is written as a code (-1) where allowed.
        rule = rule or Rule(nullable=False)
        checks = (pa.Check.isin(allowed, name=f"{name}_in_codebook"), *rule.checks)
    else:
        rule = rule or Rule()
        checks = rule.checks
    return pa.Column(DTYPES[kind], list(checks), nullable=rule.nullable, unique=rule.unique)


def _schema(table: str, rules: Mapping[str, Rule], **options: Any) -> pa.DataFrameSchema:
    """The strict schema of ``table``: every column of ``codebook.SCHEMA``, with ``rules`` where given."""
    kinds = codebook.SCHEMA[table]
    unknown = set(rules) - set(kinds)
    if unknown:
        raise KeyError(f"rules for columns that {table} does not have: {sorted(unknown)}")
    columns = {name: _column(table, name, kind, rules.get(name)) for name, kind in kinds.items()}
    return pa.DataFrameSchema(columns, strict=True, name=table, **options)


def _in_accidents(accidents: Collection[int], unique: bool = False) -> Rule:
    return Rule((pa.Check.isin(accidents, name="num_acc_in_caracteristiques"),), nullable=False, unique=unique)


def caracteristiques(year: int) -> pa.DataFrameSchema:
    """Accident-level table: one row per Num_Acc."""
    return _schema(
        "caracteristiques",
        {
            "Num_Acc": Rule((pa.Check(lambda s: s // 10**8 == year, name="num_acc_of_year"),), False, unique=True),
            "jour": _range(1, 31, nullable=False),
            "mois": _range(1, 12, nullable=False),
            "an": Rule((pa.Check.eq(year, name="an_is_year"),), nullable=False),
            "hrmn": Rule((pa.Check.str_matches(r"^([01]\d|2[0-3]):[0-5]\d$", name="hrmn_is_hh_mm"),), False),
            "dep": Rule((pa.Check.isin(DEPARTMENTS, name="dep_is_insee_department"),), nullable=False),
            "com": Rule((pa.Check.str_matches(COM_PATTERN, name="com_is_insee_commune"),), nullable=False),
            "lat": _range(-90, 90, name="lat_in_range"),
            "long": _range(-180, 180, name="long_in_range"),
        },
    )


def lieux(accidents: Collection[int]) -> pa.DataFrameSchema:
    """Main place of each accident."""
    return _schema(
        "lieux",
        {
            "Num_Acc": _in_accidents(accidents, unique=True),
            "nbv": _range(-1, 20, nullable=False, name="nbv_in_range"),
            "lartpc": _range(0, 100, name="lartpc_in_range"),
            "larrout": _range(-1, 100, name="larrout_in_range"),
            "vma": _range(-1, 130, nullable=False, name="vma_legal_limit"),
        },
    )


def vehicules(accidents: Collection[int]) -> pa.DataFrameSchema:
    """Vehicles involved; (Num_Acc, id_vehicule) is the key."""
    return _schema(
        "vehicules",
        {
            "Num_Acc": _in_accidents(accidents),
            "id_vehicule": Rule((pa.Check.str_matches(r"^\d+$", name="id_vehicule_digits"),), nullable=False),
            "num_veh": Rule(nullable=False),
            "occutc": _range(0, 200, name="occutc_in_range"),
        },
        unique=["Num_Acc", "id_vehicule"],
    )


def usagers(accidents: Collection[int], vehicles: Collection[str]) -> pa.DataFrameSchema:
    """People involved; each belongs to a vehicle of the same accident."""
    return _schema(
        "usagers",
        {
            "Num_Acc": _in_accidents(accidents),
            "id_vehicule": Rule(nullable=False),
            "num_veh": Rule(nullable=False),
            "an_nais": _range(1900, 2100, name="an_nais_in_range"),
        },
        checks=[
            pa.Check(
                lambda df: (df["Num_Acc"].astype("string") + "/" + df["id_vehicule"]).isin(vehicles),
                name="vehicle_exists",
            )
        ],
    )


def vehicle_keys(vehicles: pd.DataFrame) -> set[str]:
    """(Num_Acc, id_vehicule) keys in the form the ``vehicle_exists`` check uses."""
    return set((vehicles["Num_Acc"].astype("string") + "/" + vehicles["id_vehicule"]).dropna())
