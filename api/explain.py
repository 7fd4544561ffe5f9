"""Readable names for model features, and the top contributing factors of one prediction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.model import LoadedModel
from pipeline.records import FIELDS

# Features built in pipeline/features.py from the record; record fields carry their own labels.
DERIVED_LABELS: Mapping[str, tuple[str, str]] = {
    "weekday": ("Jour de la semaine", "Day of week"),
    "weekend": ("Week-end", "Weekend"),
    "night": ("Nuit", "Night-time"),
    "dep_code": ("Département", "Department"),
    "overseas": ("Outre-mer", "Overseas department"),
    "nb_vulnerables": (
        "Piétons, vélos, EDP et deux-roues motorisés",
        "Pedestrians, bicycles, e-scooters and powered two-wheelers",
    ),
    "nb_lourds": (
        "Poids lourds, bus, trains et engins agricoles",
        "Trucks, buses, trains and farm vehicles",
    ),
    "nb_2rm": ("Deux-roues motorisés", "Powered two-wheelers"),
    "seul": ("Accident à un seul véhicule", "Single-vehicle accident"),
    "usagers_par_vehicule": ("Usagers par véhicule", "People per vehicle"),
    "vulnerable_vs_lourd": ("Usager vulnérable face à un véhicule lourd", "Vulnerable user against a heavy vehicle"),
    "nb_obs_fixe": ("Obstacles fixes heurtés", "Fixed obstacles hit"),
    "age_ecart": ("Écart d'âge entre usagers", "Age gap between the people involved"),
    "hors_agglo_vma": ("Vitesse maximale hors agglomération", "Speed limit outside built-up areas"),
    "dep_te": ("Taux de gravité du département", "Department severity rate"),
    "com_te": ("Taux de gravité de la commune", "Municipality severity rate"),
    "com_accidents": (
        "Accidents dans la commune (années d'entraînement)",
        "Accidents in the municipality (training years)",
    ),
}
_WEEKDAYS: tuple[str, ...] = (
    "Lundi (Monday)",
    "Mardi (Tuesday)",
    "Mercredi (Wednesday)",
    "Jeudi (Thursday)",
    "Vendredi (Friday)",
    "Samedi (Saturday)",
    "Dimanche (Sunday)",
)
_FLAGS = frozenset({"weekend", "night", "overseas", "seul", "vulnerable_vs_lourd"})
_YES_NO: Mapping[float, str] = {1.0: "Oui (yes)", 0.0: "Non (no)"}


def feature_label(name: str) -> tuple[str, str]:
    """(French, English) label of a model feature."""
    if name in FIELDS:
        spec = FIELDS[name]
        return spec.fr, spec.en
    return DERIVED_LABELS.get(name, (name, name))


def _clean(value: Any) -> float | int | None:
    """A model input as JSON shows it: integral values as ints, NaN as None."""
    if value is None:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    return int(number) if number.is_integer() else round(number, 6)


def value_label(name: str, value: float | int | str | None, record: Mapping[str, Any]) -> str | None:
    """A readable form of a feature's value: codebook label, weekday, yes/no or place."""
    if value is None:
        return None
    if name in FIELDS:
        return FIELDS[name].labels().get(str(value))
    if name == "weekday" and isinstance(value, int):
        return _WEEKDAYS[value]
    if name in _FLAGS and isinstance(value, (int, float)):
        return _YES_NO.get(float(value))
    if name in ("dep_code", "dep_te"):
        return f"Département {record.get('dep')} (department)"
    if name in ("com_te", "com_accidents"):
        com = record.get("com")
        return f"Commune {com} (municipality)" if com else "Commune inconnue (unknown municipality)"
    return None


def top_factors(
    model: LoadedModel, row: np.ndarray, record: Mapping[str, Any], top: int
) -> tuple[list[dict[str, Any]], float]:
    """The ``top`` features by absolute SHAP contribution (log-odds), and the bias term."""
    contribs = model.contributions(row)
    columns = model.spec.columns
    order = np.argsort(-np.abs(contribs[:-1]), kind="stable")[:top]
    factors = []
    for j in order:
        name = columns[j]
        value = _clean(record.get(name)) if name in FIELDS else _clean(row[0, j])
        fr, en = feature_label(name)
        contribution = float(contribs[j])
        factors.append(
            {
                "feature": name,
                "label_fr": fr,
                "label_en": en,
                "value": value,
                "value_label": value_label(name, value, record),
                "contribution": round(contribution, 6),
                "direction": "increases" if contribution >= 0 else "decreases",
            }
        )
    return factors, float(contribs[-1])
