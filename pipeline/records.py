"""The accident record: one row per accident, as the model sees it.

``RECORD_FIELDS`` is the single definition. From it come the pydantic model that the
API validates (``AccidentRecord``), the vectorised checks applied to flat CSV input
(``check_records``), the dashboard's form (through the API's ``/model`` schema), and the
aggregation of the four raw tables into records (``records_from_tables``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from pipeline import codebook

Kind = Literal["code", "int", "float", "dep", "com"]

DEPARTMENTS: tuple[str, ...] = (
    *(f"{i:02d}" for i in range(1, 20)),
    "2A",
    "2B",
    *(f"{i:02d}" for i in range(21, 96)),
    "971",
    "972",
    "973",
    "974",
    "975",
    "976",
    "977",
    "978",
    "986",
    "987",
    "988",
)


@dataclass(frozen=True)
class FieldSpec:
    """One field of the accident record."""

    name: str
    kind: Kind
    group: str
    fr: str
    en: str
    default: int | float | str | None
    minimum: float | None = None
    maximum: float | None = None
    codebook: str | None = None  # codebook column whose codes and labels apply
    optional: bool = False  # None (unknown) is allowed

    def allowed(self) -> tuple[int | str, ...]:
        """Allowed codes for coded fields, else ()."""
        if self.kind == "dep":
            return DEPARTMENTS
        if self.kind == "code" and self.codebook:
            return tuple(sorted(codebook.allowed(self.codebook)))
        return ()

    def labels(self) -> dict[str, str]:
        """Code -> "French (English)" label, for forms and readable factors."""
        if self.kind == "code" and self.codebook:
            return {str(c): codebook.label(self.codebook, int(c), "both") for c in self.allowed()}
        return {}


def _code(name: str, group: str, fr: str, en: str, default: int, column: str | None = None) -> FieldSpec:
    return FieldSpec(name, "code", group, fr, en, default, codebook=column or name)


def _count(name: str, group: str, fr: str, en: str, default: int = 0, maximum: int = 500) -> FieldSpec:
    return FieldSpec(name, "int", group, fr, en, default, minimum=0, maximum=maximum)


# Vehicle categories (catv codes) grouped the way road-safety reports group them.
VEHICLE_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "nb_velo": ((1, 80), "Vélos (dont VAE)", "Bicycles (incl. e-bikes)"),
    "nb_edp": ((50, 60), "Engins de déplacement personnel", "Personal mobility devices (e-scooters)"),
    "nb_cyclo": ((2, 30, 41), "Cyclomoteurs et scooters ≤ 50 cm3", "Mopeds and scooters ≤ 50 cc"),
    "nb_moto": ((31, 32, 33, 34, 42, 43), "Motos et scooters > 50 cm3", "Motorcycles and scooters > 50 cc"),
    "nb_vl": ((3, 7), "Voitures (VL, voiturettes)", "Cars"),
    "nb_vu": ((10,), "Véhicules utilitaires", "Vans"),
    "nb_pl": ((13, 14, 15, 16, 17), "Poids lourds et tracteurs routiers", "Trucks and road tractors"),
    "nb_tc": ((37, 38), "Autobus et autocars", "Buses and coaches"),
    "nb_rail": ((39, 40), "Trains et tramways", "Trains and trams"),
    "nb_agricole": ((20, 21), "Engins spéciaux et tracteurs agricoles", "Special and farm vehicles"),
}
# Fixed obstacles (obs codes).
OBSTACLE_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "obs_vehicule_stationne": ((1,), "Véhicules en stationnement heurtés", "Parked vehicles hit"),
    "obs_arbre": ((2,), "Arbres heurtés", "Trees hit"),
    "obs_glissiere": ((3, 4, 5), "Glissières heurtées", "Guard rails hit"),
    "obs_mur_pile": ((6, 10), "Bâtiments, murs, piles de pont, parapets", "Walls, bridge piers, parapets"),
    "obs_poteau": ((7, 8, 9), "Poteaux, supports, mobilier urbain", "Posts, sign supports, street furniture"),
    "obs_bordure_ilot": ((11, 12), "Îlots et bordures de trottoir", "Traffic islands and kerbs"),
    "obs_fosse": ((13, 17), "Fossés, talus, parois, têtes d'aqueduc", "Ditches, banks, rock faces, culverts"),
    "obs_autre_fixe": ((14, 15), "Autres obstacles fixes", "Other fixed obstacles"),
    "obs_sortie_chaussee": ((16,), "Sorties de chaussée sans obstacle", "Run-offs without obstacle"),
}
MOBILE_OBSTACLE_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "obsm_pieton": ((1,), "Véhicules ayant heurté un piéton", "Vehicles that hit a pedestrian"),
    "obsm_vehicule": ((2,), "Véhicules ayant heurté un véhicule", "Vehicles that hit a vehicle"),
    "obsm_rail": ((4,), "Véhicules ayant heurté un véhicule sur rail", "Vehicles that hit a rail vehicle"),
    "obsm_animal": ((5, 6), "Véhicules ayant heurté un animal", "Vehicles that hit an animal"),
}
IMPACT_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "choc_avant": ((1, 2, 3), "Chocs avant", "Front impacts"),
    "choc_arriere": ((4, 5, 6), "Chocs arrière", "Rear impacts"),
    "choc_cote": ((7, 8), "Chocs latéraux", "Side impacts"),
    "choc_multiple": ((9,), "Chocs multiples (tonneaux)", "Multiple impacts (rollover)"),
}
MANOEUVRE_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "manv_sans_changement": ((1, 2), "Sans changement de direction", "Going straight"),
    "manv_contresens": ((5, 6, 8), "À contresens ou franchissant le TPC", "Wrong way or crossing the median"),
    "manv_depassement": ((17, 18), "En dépassement", "Overtaking"),
    "manv_tournant": ((15, 16), "En tournant", "Turning"),
    "manv_deporte": ((13, 14), "Déporté", "Swerving"),
    "manv_changement_file": ((3, 11, 12), "Changeant de file", "Changing lane"),
    "manv_insertion_demi_tour": ((9, 10, 19), "S'insérant, demi-tour, traversant", "Merging, U-turn, crossing"),
    "manv_arret": ((4, 20, 22, 23, 24), "Arrêt, stationnement, marche arrière", "Stopped, parking, reversing"),
    "manv_evitement": ((21,), "Manœuvre d'évitement", "Avoiding manoeuvre"),
}
# Safety equipment in use (secu1..3 codes).
EQUIPMENT_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "nb_ceinture": ((1,), "Usagers ceinturés", "Users wearing a seat belt"),
    "nb_casque": ((2,), "Usagers casqués", "Users wearing a helmet"),
    "nb_dispositif_enfant": ((3,), "Enfants en dispositif", "Children in a child seat"),
    "nb_gilet": ((4,), "Usagers avec gilet réfléchissant", "Users with a reflective vest"),
    "nb_airbag_gants": ((5, 6, 7), "Usagers 2RM avec airbag ou gants", "Riders with airbag or gloves"),
}
TRIP_GROUPS: Mapping[str, tuple[tuple[int, ...], str, str]] = {
    "nb_trajet_travail": ((1,), "Usagers en trajet domicile-travail", "Users commuting"),
    "nb_trajet_pro": ((4,), "Usagers en utilisation professionnelle", "Users on professional trips"),
    "nb_trajet_loisirs": ((5,), "Usagers en promenade-loisirs", "Users on leisure trips"),
}


def _groups(groups: Mapping[str, tuple[tuple[int, ...], str, str]], group: str) -> list[FieldSpec]:
    return [_count(name, group, fr, en) for name, (_, fr, en) in groups.items()]


RECORD_FIELDS: tuple[FieldSpec, ...] = (
    # time
    FieldSpec("an", "int", "time", "Année", "Year", 2021, minimum=2005, maximum=2100),
    FieldSpec("mois", "int", "time", "Mois", "Month", 6, minimum=1, maximum=12),
    FieldSpec("jour", "int", "time", "Jour du mois", "Day of month", 15, minimum=1, maximum=31),
    FieldSpec("heure", "int", "time", "Heure", "Hour", 17, minimum=0, maximum=23),
    FieldSpec("minute", "int", "time", "Minute", "Minute", 0, minimum=0, maximum=59),
    # place
    FieldSpec("dep", "dep", "place", "Département", "Department (INSEE code)", "75"),
    FieldSpec("com", "com", "place", "Commune (code INSEE)", "Municipality (INSEE code)", None, optional=True),
    _code("agg", "place", "Localisation", "Built-up area", 2),
    FieldSpec("lat", "float", "place", "Latitude", "Latitude", None, -90, 90, optional=True),
    FieldSpec("long", "float", "place", "Longitude", "Longitude", None, -180, 180, optional=True),
    _code("catr", "place", "Catégorie de route", "Road category", 4),
    _code("circ", "place", "Régime de circulation", "Traffic flow", 2),
    FieldSpec("nbv", "int", "place", "Nombre de voies", "Number of lanes", 2, minimum=-1, maximum=20),
    _code("vosp", "place", "Voie réservée", "Reserved lane", 0),
    _code("prof", "place", "Profil en long", "Road gradient", 1),
    _code("plan", "place", "Tracé en plan", "Road layout", 1),
    FieldSpec("larrout", "float", "place", "Largeur de chaussée (m)", "Road width (m)", None, 0, 100, optional=True),
    _code("surf", "place", "État de la surface", "Road surface", 1),
    _code("infra", "place", "Aménagement, infrastructure", "Infrastructure", 0),
    _code("situ", "place", "Situation de l'accident", "Position of the accident", 1),
    FieldSpec("vma", "int", "place", "Vitesse maximale autorisée", "Speed limit (km/h)", 50, minimum=-1, maximum=130),
    _code("int", "place", "Intersection", "Intersection", 1),
    # conditions
    _code("lum", "conditions", "Lumière", "Light", 1),
    _code("atm", "conditions", "Conditions atmosphériques", "Weather", 1),
    _code("col", "conditions", "Type de collision", "Collision type", 3),
    # vehicles
    _count("nb_vehicules", "vehicles", "Nombre de véhicules", "Number of vehicles", 2, maximum=100),
    *_groups(VEHICLE_GROUPS, "vehicles"),
    *_groups(OBSTACLE_GROUPS, "vehicles"),
    *_groups(MOBILE_OBSTACLE_GROUPS, "vehicles"),
    *_groups(IMPACT_GROUPS, "vehicles"),
    *_groups(MANOEUVRE_GROUPS, "vehicles"),
    # people
    _count("nb_usagers", "people", "Nombre d'usagers", "Number of people", 2),
    _count("nb_conducteurs", "people", "Conducteurs", "Drivers", 2),
    _count("nb_passagers", "people", "Passagers", "Passengers", 0),
    _count("nb_pietons", "people", "Piétons", "Pedestrians", 0),
    FieldSpec("age_min", "int", "people", "Âge du plus jeune", "Youngest age", 30, 0, 120, optional=True),
    FieldSpec("age_max", "int", "people", "Âge du plus âgé", "Oldest age", 45, 0, 120, optional=True),
    _count("nb_enfants", "people", "Usagers de moins de 14 ans", "People under 14"),
    _count("nb_jeunes", "people", "Usagers de 18 à 24 ans", "People aged 18-24"),
    _count("nb_seniors", "people", "Usagers de 75 ans et plus", "People aged 75+"),
    _count("nb_femmes", "people", "Femmes", "Women", 1),
    *_groups(EQUIPMENT_GROUPS, "people"),
    _count("nb_sans_equipement", "people", "Usagers sans équipement", "People with no safety equipment"),
    *_groups(TRIP_GROUPS, "people"),
)
FIELDS: Mapping[str, FieldSpec] = {f.name: f for f in RECORD_FIELDS}
RECORD_COLUMNS: tuple[str, ...] = tuple(FIELDS)
ID_COLUMN = "Num_Acc"
TARGET = "severe"
SEVERE_GRAV: tuple[int, ...] = (2, 3)  # killed, hospitalised


COM_PATTERN = r"^(\d{5}|2[AB]\d{3})$"


def _annotation(spec: FieldSpec) -> Any:
    if spec.kind == "com":
        return Annotated[str, StringConstraints(pattern=COM_PATTERN)] | None
    if spec.kind in ("code", "dep"):
        base: Any = Literal[spec.allowed()]
    elif spec.kind == "int":
        base = int
    else:
        base = float
    return base | None if spec.optional else base


def _pydantic_field(spec: FieldSpec) -> Any:
    extra: dict[str, Any] = {}
    if spec.kind in ("int", "float"):
        if spec.minimum is not None:
            extra["ge"] = spec.minimum
        if spec.maximum is not None:
            extra["le"] = spec.maximum
    desc = f"{spec.fr} / {spec.en}"
    if spec.kind == "code":
        desc += ". " + "; ".join(f"{c}: {lab}" for c, lab in spec.labels().items())
    return (_annotation(spec), Field(spec.default, description=desc, **extra))


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


AccidentRecord: type[BaseModel] = create_model(
    "AccidentRecord",
    __base__=_RecordBase,
    __doc__="One accident as the model sees it, coded as in the ONISR codebook. "
    "Every field is optional and defaults to the documented value.",
    **{spec.name: _pydantic_field(spec) for spec in RECORD_FIELDS},
)


def default_record() -> dict[str, Any]:
    """A record with every field at its default."""
    return {f.name: f.default for f in RECORD_FIELDS}


# ---------------------------------------------------------------------------
# raw tables -> records


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


# ---------------------------------------------------------------------------
# flat records (CSV upload, batch input) -> typed records + rejects


@lru_cache(maxsize=1)
def _allowed_sets() -> dict[str, frozenset[Any]]:
    return {f.name: frozenset(f.allowed()) for f in RECORD_FIELDS if f.kind in ("code", "dep")}


MISSING_TOKENS: tuple[str, ...] = ("", "N/A", "NA", "nan", "None")  # cells, once stripped, that mean "unknown"


@cache
def _code_table(name: str) -> tuple[int, np.ndarray]:
    """The smallest code of a coded field and a lookup table: ``table[code - smallest]`` is True when allowed."""
    codes = np.array(sorted(int(c) for c in _allowed_sets()[name]), dtype=np.int64)
    table = np.zeros(int(codes[-1] - codes[0]) + 1, dtype=bool)
    table[codes - codes[0]] = True
    return int(codes[0]), table


def _in_codebook(values: np.ndarray, name: str) -> np.ndarray:
    """Which values are allowed codes of a coded field (NaN and fractions are not)."""
    low, table = _code_table(name)
    with np.errstate(invalid="ignore"):
        pos = values - low
        inside = (pos >= 0) & (pos < len(table)) & (pos == np.floor(pos))
    out = np.zeros(len(values), dtype=bool)
    out[inside] = table[pos[inside].astype(np.intp)]
    return out


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A column's cells as float64 (NaN unless a number), which cells are missing, which are not numbers."""
    if pd.api.types.is_numeric_dtype(raw.dtype):
        # Already numbers (the batch job's clean columns, records_from_tables' output): no parsing.
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        return values, missing, np.zeros(len(values), dtype=bool)
    text = raw
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        text = raw.astype("string").str.strip()
        text = text.where(~text.isin(MISSING_TOKENS)).str.replace(",", ".", regex=False)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = text.isna().to_numpy()
    return values, missing, np.isnan(values) & ~missing


def _integers(values: np.ndarray, unusable: np.ndarray, optional: bool) -> np.ndarray | pd.arrays.IntegerArray:
    """Whole numbers as int32 (unusable cells already filled with the default), or nullable Int32 (NA) when optional."""
    if not optional:
        return values.astype(np.int32)
    return pd.arrays.IntegerArray(np.where(unusable, 0, values).astype(np.int32), unusable)


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line": pd.Series(dtype="int64"),
            "column": pd.Series(dtype="string"),
            "value": pd.Series(dtype="string"),
            "reason": pd.Series(dtype="string"),
        }
    )


def check_records(frame: pd.DataFrame, first_line: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type and check a frame of flat records (string or numeric cells).

    Returns the typed valid rows and a rejects frame (``line``, ``column``, ``value``,
    ``reason``) with one row per bad cell. Missing columns take their documented default,
    except that a column present under no known name is reported by the caller.
    """
    n = len(frame)
    typed: dict[str, Any] = {}
    bad = np.zeros(n, dtype=bool)
    rejects: list[pd.DataFrame] = []
    lines = np.arange(first_line, first_line + n)
    allowed = _allowed_sets()

    def reject(mask: np.ndarray, column: str, values: pd.Series, reason: str) -> None:
        if mask.any():
            rejects.append(
                pd.DataFrame(
                    {
                        "line": lines[mask],
                        "column": column,
                        "value": values[mask].astype("string").to_numpy(),
                        "reason": reason,
                    }
                )
            )

    for spec in RECORD_FIELDS:
        if spec.name not in frame.columns:
            default = pd.Series([spec.default] * n)
            if spec.kind in ("int", "code"):
                default = default.astype("Int32" if spec.optional else "int32")
            elif spec.kind == "float":
                default = default.astype("float64")
            typed[spec.name] = default.array
            continue
        raw = frame[spec.name]
        if spec.kind in ("com", "dep"):
            text = raw.astype("string").str.strip()
            text = text.where(~text.isin(MISSING_TOKENS))
            if spec.kind == "com":
                com = text.astype("string").str.upper()
                invalid = (~com.str.fullmatch(COM_PATTERN[1:-1]).fillna(True)).to_numpy()
                reject(invalid, spec.name, raw, "not an INSEE commune code (5 characters, e.g. 75056 or 2A004)")
                typed[spec.name] = com.array
            else:
                dep = text.astype("string").str.upper()
                # "1" and "01" are the same department.
                dep = dep.where(~dep.str.fullmatch(r"\d"), "0" + dep)
                invalid = (~dep.isin(allowed[spec.name])).to_numpy() & ~dep.isna().to_numpy()
                reject(invalid, spec.name, raw, "unknown department code")
                typed[spec.name] = dep.fillna(str(spec.default)).array
            bad |= invalid
            continue
        values, missing, not_number = _numbers(raw)
        reject(not_number, spec.name, raw, "not a number")
        ok = ~missing & ~not_number
        invalid = np.zeros(n, dtype=bool)
        if spec.kind != "float":
            frac = ok & ~((np.floor(values) == values) & np.isfinite(values))  # NaN and infinities are no integers
            reject(frac, spec.name, raw, "not an integer")
            invalid |= frac
        if spec.kind == "code":
            unknown = ok & ~_in_codebook(values, spec.name)
            codes = ", ".join(str(c) for c in spec.allowed())
            reject(unknown & ~invalid, spec.name, raw, f"code not in the codebook (allowed: {codes})")
            invalid |= unknown
        else:
            low = spec.minimum if spec.minimum is not None else -np.inf
            high = spec.maximum if spec.maximum is not None else np.inf
            with np.errstate(invalid="ignore"):
                out_of_range = ok & ~((values >= low) & (values <= high))
            reject(out_of_range & ~invalid, spec.name, raw, f"out of range [{spec.minimum}, {spec.maximum}]")
            invalid |= out_of_range
        unusable = missing | not_number | invalid
        # Bad cells are dropped below; fill them so the column can take its integer type.
        # np.where makes a new array: the output never shares (read-only) memory with the input.
        fill = np.nan if spec.optional or spec.default is None else float(spec.default)
        filled = np.where(unusable, fill, values)
        typed[spec.name] = filled if spec.kind == "float" else _integers(filled, unusable, spec.optional)
        bad |= not_number | invalid
    valid_date = _valid_dates(typed)
    date_bad = ~valid_date & ~bad
    if date_bad.any():
        jour = frame["jour"] if "jour" in frame.columns else pd.Series(typed["jour"], index=frame.index)
        reject(date_bad, "jour", jour, "not a valid date")
    bad |= ~valid_date
    rejects_frame = (
        pd.concat(rejects, ignore_index=True).sort_values(["line", "column"], kind="stable")
        if rejects
        else _empty_rejects()
    )
    index = frame.index
    if bad.any():
        keep = ~bad
        typed = {name: column[keep] for name, column in typed.items()}
        index = index[keep]
    # One block per column, as typed: no copy into a consolidated 2-D block.
    out = pd.DataFrame(typed, index=index, copy=False)
    return out, rejects_frame.reset_index(drop=True)


def _valid_dates(columns: Mapping[str, Any]) -> np.ndarray:
    an, mois, jour = (np.asarray(columns[c], dtype=np.float64) for c in ("an", "mois", "jour"))
    leap = ((an % 4 == 0) & (an % 100 != 0)) | (an % 400 == 0)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
    with np.errstate(invalid="ignore"):
        idx = np.clip(np.nan_to_num(mois, nan=1).astype(int) - 1, 0, 11)
        limit = days[idx] + ((idx == 1) & leap)
        return np.asarray((jour >= 1) & (jour <= limit))
