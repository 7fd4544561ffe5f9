"""The four raw BAAC tables of a year -> one accident record per accident, plus the target."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.records import (
    EQUIPMENT_GROUPS,
    ID_COLUMN,
    IMPACT_GROUPS,
    MANOEUVRE_GROUPS,
    MOBILE_OBSTACLE_GROUPS,
    OBSTACLE_GROUPS,
    RECORD_COLUMNS,
    RECORD_FIELDS,
    SEVERE_GRAV,
    TARGET,
    TRIP_GROUPS,
    VEHICLE_GROUPS,
)


def _in(series: pd.Series, codes: tuple[int, ...]) -> pd.Series:
    return series.isin(codes).astype("int16")


def _count_groups(
    frame: pd.DataFrame, column: str, groups: Mapping[str, tuple[tuple[int, ...], str, str]]
) -> pd.DataFrame:
    values = frame[column].fillna(-99)
    return pd.DataFrame({name: _in(values, codes) for name, (codes, _, _) in groups.items()})


def _vehicle_features(veh: pd.DataFrame) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"nb_vehicules": np.ones(len(veh), dtype="int16")}, index=veh.index),
        _count_groups(veh, "catv", VEHICLE_GROUPS),
        _count_groups(veh, "obs", OBSTACLE_GROUPS),
        _count_groups(veh, "obsm", MOBILE_OBSTACLE_GROUPS),
        _count_groups(veh, "choc", IMPACT_GROUPS),
        _count_groups(veh, "manv", MANOEUVRE_GROUPS),
    ]
    flags = pd.concat(parts, axis=1)
    flags[ID_COLUMN] = veh[ID_COLUMN].to_numpy()
    return flags.groupby(ID_COLUMN, sort=True).sum()


def _user_features(users: pd.DataFrame, year_of_acc: pd.Series) -> pd.DataFrame:
    an = users[ID_COLUMN].map(year_of_acc)
    age = (an - users["an_nais"]).astype("Float64")
    age = age.where((age >= 0) & (age <= 120))
    catu = users["catu"].fillna(-99)
    secu = [users[c].fillna(-99) for c in ("secu1", "secu2", "secu3")]
    flags = pd.DataFrame(
        {
            "nb_usagers": np.ones(len(users), dtype="int16"),
            "nb_conducteurs": _in(catu, (1,)),
            "nb_passagers": _in(catu, (2,)),
            "nb_pietons": _in(catu, (3,)),
            "nb_enfants": (age < 14).fillna(False).astype("int16"),
            "nb_jeunes": ((age >= 18) & (age <= 24)).fillna(False).astype("int16"),
            "nb_seniors": (age >= 75).fillna(False).astype("int16"),
            "nb_femmes": _in(users["sexe"].fillna(-99), (2,)),
            **{
                name: (_in(secu[0], codes) | _in(secu[1], codes) | _in(secu[2], codes)).astype("int16")
                for name, (codes, _, _) in EQUIPMENT_GROUPS.items()
            },
            "nb_sans_equipement": _in(secu[0], (0,)),
            **{name: _in(users["trajet"].fillna(-99), codes) for name, (codes, _, _) in TRIP_GROUPS.items()},
            "severe": _in(users["grav"].fillna(-99), SEVERE_GRAV),
        },
        index=users.index,
    )
    flags[ID_COLUMN] = users[ID_COLUMN].to_numpy()
    grouped = flags.groupby(ID_COLUMN, sort=True)
    out = grouped.sum()
    out["severe"] = grouped["severe"].max()
    ages = pd.DataFrame({ID_COLUMN: users[ID_COLUMN].to_numpy(), "age": age.to_numpy(dtype=float, na_value=np.nan)})
    by_acc = ages.groupby(ID_COLUMN, sort=True)["age"]
    out["age_min"] = by_acc.min()
    out["age_max"] = by_acc.max()
    return out


def records_from_tables(tables: Mapping[str, pd.DataFrame], max_vma: int = 130) -> pd.DataFrame:
    """Aggregate the four typed tables of a year into one record per accident, plus the target.

    The target ``severe`` is 1 when at least one person was killed or hospitalised.
    Nothing else is derived from ``grav``.
    """
    carac = tables["caracteristiques"].set_index(ID_COLUMN).sort_index()
    lieux = tables["lieux"].drop_duplicates(ID_COLUMN, keep="first").set_index(ID_COLUMN)
    hrmn = carac["hrmn"].astype("string").str.split(":", n=1, expand=True)
    base = pd.DataFrame(
        {
            "an": carac["an"],
            "mois": carac["mois"],
            "jour": carac["jour"],
            "heure": pd.to_numeric(hrmn[0], errors="coerce").astype("Int32"),
            "minute": pd.to_numeric(hrmn[1], errors="coerce").astype("Int32"),
            "dep": carac["dep"],
            "com": carac["com"],
            "agg": carac["agg"],
            # 0,0 is "not geolocated", not a place in the Gulf of Guinea.
            "lat": carac["lat"].where(~((carac["lat"] == 0) & (carac["long"] == 0))),
            "long": carac["long"].where(~((carac["lat"] == 0) & (carac["long"] == 0))),
            "lum": carac["lum"],
            "atm": carac["atm"],
            "col": carac["col"],
            "int": carac["int"],
        },
        index=carac.index,
    )
    for col in ("catr", "circ", "nbv", "vosp", "prof", "plan", "larrout", "surf", "infra", "situ", "vma"):
        base[col] = lieux[col].reindex(base.index)
    # Speed limits above the legal maximum are data-entry errors: treat as not recorded.
    vma = base["vma"]
    base["vma"] = vma.where((vma >= 1) & (vma <= max_vma) | vma.isna(), -1)
    base["larrout"] = base["larrout"].where((base["larrout"] > 0) & (base["larrout"] <= 100))
    base["nbv"] = base["nbv"].where(base["nbv"] <= 20, -1)
    veh = _vehicle_features(tables["vehicules"]).reindex(base.index, fill_value=0)
    users = _user_features(tables["usagers"], carac["an"]).reindex(base.index)
    out = pd.concat([base, veh, users], axis=1)
    count_cols = [f.name for f in RECORD_FIELDS if f.kind == "int" and f.name in veh.columns.union(users.columns)]
    out[count_cols] = out[count_cols].fillna(0)
    out["severe"] = out["severe"].fillna(0).astype("int8")
    out = out.reset_index()
    return out[[ID_COLUMN, *RECORD_COLUMNS, TARGET]]
