"""Pandera schemas of the four typed BAAC tables, built from the official codebook.

Cross-table checks (every user's vehicle exists, every Num_Acc exists in
caracteristiques) are expressed as ``isin`` checks against the keys of the other
tables, so they are reported like any other check.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd
import pandera.pandas as pa

from pipeline import codebook
from pipeline.records import COM_PATTERN, DEPARTMENTS


def _code(table: str, column: str, nullable: bool = False) -> pa.Column:
    allowed = sorted(codebook.allowed(f"{table}.{column}"))
    return pa.Column("Int16", pa.Check.isin(allowed, name=f"{column}_in_codebook"), nullable=nullable)


def _range(dtype: str, low: float, high: float, nullable: bool = True, name: str | None = None) -> pa.Column:
    return pa.Column(dtype, pa.Check.in_range(low, high, name=name), nullable=nullable)


def caracteristiques(year: int) -> pa.DataFrameSchema:
    """Accident-level table: one row per Num_Acc."""
    t = "caracteristiques"
    return pa.DataFrameSchema(
        {
            "Num_Acc": pa.Column("int64", pa.Check(lambda s: s // 10**8 == year, name="num_acc_of_year"), unique=True),
            "jour": _range("Int32", 1, 31, nullable=False),
            "mois": _range("Int32", 1, 12, nullable=False),
            "an": pa.Column("Int32", pa.Check.eq(year, name="an_is_year")),
            "hrmn": pa.Column("string", pa.Check.str_matches(r"^([01]\d|2[0-3]):[0-5]\d$", name="hrmn_is_hh_mm")),
            "lum": _code(t, "lum"),
            "dep": pa.Column("string", pa.Check.isin(DEPARTMENTS, name="dep_is_insee_department")),
            "com": pa.Column("string", pa.Check.str_matches(COM_PATTERN, name="com_is_insee_commune")),
            "agg": _code(t, "agg"),
            "int": _code(t, "int"),
            "atm": _code(t, "atm"),
            "col": _code(t, "col"),
            "adr": pa.Column("string", nullable=True),
            "lat": _range("float64", -90, 90, name="lat_in_range"),
            "long": _range("float64", -180, 180, name="long_in_range"),
        },
        strict=True,
        name=t,
    )


def lieux(accidents: Collection[int]) -> pa.DataFrameSchema:
    """Main place of each accident."""
    t = "lieux"
    return pa.DataFrameSchema(
        {
            "Num_Acc": pa.Column("int64", pa.Check.isin(accidents, name="num_acc_in_caracteristiques"), unique=True),
            "catr": _code(t, "catr"),
            "voie": pa.Column("string", nullable=True),
            "v1": pa.Column("Int16", nullable=True),
            "v2": pa.Column("string", nullable=True),
            "circ": _code(t, "circ"),
            "nbv": _range("Int32", -1, 20, nullable=False, name="nbv_in_range"),
            "vosp": _code(t, "vosp"),
            "prof": _code(t, "prof"),
            "pr": pa.Column("Int32", nullable=True),
            "pr1": pa.Column("Int32", nullable=True),
            "plan": _code(t, "plan"),
            "lartpc": _range("float64", 0, 100, name="lartpc_in_range"),
            "larrout": _range("float64", -1, 100, name="larrout_in_range"),
            "surf": _code(t, "surf"),
            "infra": _code(t, "infra"),
            "situ": _code(t, "situ"),
            "vma": _range("Int32", -1, 130, nullable=False, name="vma_legal_limit"),
        },
        strict=True,
        name=t,
    )


def vehicules(accidents: Collection[int]) -> pa.DataFrameSchema:
    """Vehicles involved; (Num_Acc, id_vehicule) is the key."""
    t = "vehicules"
    return pa.DataFrameSchema(
        {
            "Num_Acc": pa.Column("int64", pa.Check.isin(accidents, name="num_acc_in_caracteristiques")),
            "id_vehicule": pa.Column("string", pa.Check.str_matches(r"^\d+$", name="id_vehicule_digits")),
            "num_veh": pa.Column("string"),
            "senc": _code(t, "senc"),
            "catv": _code(t, "catv"),
            "obs": _code(t, "obs"),
            "obsm": _code(t, "obsm"),
            "choc": _code(t, "choc"),
            "manv": _code(t, "manv"),
            "motor": _code(t, "motor"),
            "occutc": _range("Int32", 0, 200, name="occutc_in_range"),
        },
        strict=True,
        unique=["Num_Acc", "id_vehicule"],
        name=t,
    )


def usagers(accidents: Collection[int], vehicles: Collection[str]) -> pa.DataFrameSchema:
    """People involved; each belongs to a vehicle of the same accident."""
    t = "usagers"
    return pa.DataFrameSchema(
        {
            "Num_Acc": pa.Column("int64", pa.Check.isin(accidents, name="num_acc_in_caracteristiques")),
            "id_vehicule": pa.Column("string"),
            "num_veh": pa.Column("string"),
            "place": _code(t, "place"),
            "catu": _code(t, "catu"),
            "grav": _code(t, "grav"),
            "sexe": _code(t, "sexe"),
            "an_nais": _range("Int32", 1900, 2100, name="an_nais_in_range"),
            "trajet": _code(t, "trajet"),
            "secu1": _code(t, "secu1"),
            "secu2": _code(t, "secu2"),
            "secu3": _code(t, "secu3"),
            "locp": _code(t, "locp"),
            "actp": _code(t, "actp"),
            "etatp": _code(t, "etatp"),
        },
        checks=[
            pa.Check(
                lambda df: (df["Num_Acc"].astype("string") + "/" + df["id_vehicule"]).isin(vehicles),
                name="vehicle_exists",
            )
        ],
        strict=True,
        name=t,
    )


def vehicle_keys(vehicles: pd.DataFrame) -> set[str]:
    """(Num_Acc, id_vehicule) keys in the form the ``vehicle_exists`` check uses."""
    return set((vehicles["Num_Acc"].astype("string") + "/" + vehicles["id_vehicule"]).dropna())
