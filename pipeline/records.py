"""The accident record: one row per accident, as the model sees it.

``RECORD_FIELDS`` is the single definition. From it come the pydantic model that the
API validates (``AccidentRecord``), the vectorised checks applied to flat CSV input
(``pipeline.record_checks``), the dashboard's form (through the API's ``/model`` schema), and the
aggregation of the four raw tables into records (``pipeline.record_tables``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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


_NUMERIC_FIELDS = frozenset(f.name for f in RECORD_FIELDS if f.kind in ("code", "int", "float"))
_FIELDS = {spec.name: _pydantic_field(spec) for spec in RECORD_FIELDS}


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _FieldByField(_RecordBase):
    """Numeric fields checked one by one: only used to report the errors of a bad record."""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode would read "2" or true as 2; the schema says number.
        if isinstance(value, (str, bool)) and info.field_name in _NUMERIC_FIELDS:
            raise PydanticCustomError(
                "number_type", "Input should be a JSON number, not {kind}", {"kind": type(value).__name__}
            )
        return value


_CheckedRecord: type[BaseModel] = create_model("_CheckedRecord", __base__=_FieldByField, **_FIELDS)


class _StrictNumbers(_RecordBase):
    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        # One pass over the body instead of a validator call per field (~12 us a record). A string
        # or a bool in a numeric field: ``_CheckedRecord`` raises the very errors a per-field
        # validator gives, alongside the record's other errors.
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(value, (str, bool)) and name in _NUMERIC_FIELDS:
                    _CheckedRecord.model_validate(data)
        return data


AccidentRecord: type[BaseModel] = create_model(
    "AccidentRecord",
    __base__=_StrictNumbers,
    __doc__="One accident as the model sees it, coded as in the ONISR codebook (``GET /model`` lists the "
    "fields, their labels and allowed codes). Every field is optional and defaults to the documented value; "
    "unknown fields are refused. Numeric fields take JSON numbers only (an integer field accepts ``2`` or "
    '``2.0``, not ``"2"`` nor ``true``).',
    **_FIELDS,
)


def default_record() -> dict[str, Any]:
    """A record with every field at its default."""
    return {f.name: f.default for f in RECORD_FIELDS}
