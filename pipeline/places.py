"""Where the training accidents happened: each commune's centre, and a typical real accident.

Both travel with the model (written by ``evaluate``, logged by ``register``) so that the API can
offer places by name with coordinates, and the dashboard's What-if page can open on a coherent
record instead of a made-up one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, TARGET

# Fields whose mode says nothing about a "typical" accident (the date), or that are continuous.
NOT_COMPARED = frozenset({"an", "mois", "jour", "minute", "lat", "long", "larrout", "age_min", "age_max"})
OPTIONAL = tuple(name for name, spec in FIELDS.items() if spec.optional)


def commune_centres(records: pd.DataFrame) -> pd.DataFrame:
    """One row per commune of the training accidents: ``com``, ``dep``, ``accidents``, median ``lat``/``long``."""
    known = records.dropna(subset=["com"])
    grouped = known.groupby("com", sort=True)
    table = pd.DataFrame(
        {
            "dep": modal_dep(known),
            "accidents": grouped.size(),
            "lat": grouped["lat"].median().round(5),
            "long": grouped["long"].median().round(5),
        }
    )
    return table.reset_index()


def modal_dep(known: pd.DataFrame) -> pd.Series:
    """Each commune's commonest ``dep`` (ties: the smallest, as ``Series.mode().iloc[0]``), indexed by ``com``.

    Counted in one group-by over (com, dep) pairs: a mode per commune in Python took seconds.
    """
    counts = known.groupby(["com", "dep"], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["com", "n", "dep"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("com").set_index("com")["dep"]


def typical_accident(records: pd.DataFrame) -> dict[str, Any]:
    """A real accident of the commune with most training accidents, the closest to its modal profile.

    Among that commune's accidents with every optional field known (the fewest unknowns when none
    has all), the one matching the most per-field modes (ties: the lowest accident number).
    """
    known = records.dropna(subset=["com"])
    com = str(known["com"].value_counts().idxmax())
    local = known[known["com"] == com]
    unknowns = local[list(OPTIONAL)].isna().sum(axis=1)
    candidates = local[unknowns == unknowns.min()]
    compared = [c for c in RECORD_COLUMNS if c not in NOT_COMPARED]
    modes = {c: local[c].mode(dropna=True).iloc[0] for c in compared}
    matches = sum((candidates[c] == modes[c]).to_numpy(dtype=int) for c in compared)
    order = np.lexsort((candidates[ID_COLUMN].astype(str).to_numpy(), -np.asarray(matches)))
    best = candidates.iloc[int(order[0])]
    record = {c: _plain(best[c], FIELDS[c].kind) for c in RECORD_COLUMNS}
    return {
        "accident_id": str(best[ID_COLUMN]),
        "severe": int(best[TARGET]),
        "com": com,
        "commune_accidents": len(local),
        "fields_compared": len(compared),
        "fields_matching_mode": int(np.asarray(matches)[order[0]]),
        "unknown_fields": int(unknowns.min()),
        "record": record,
    }


def _plain(value: Any, kind: str) -> Any:
    """numpy scalars and NA -> JSON values of the field's kind (ages are floats in the frame)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if kind in ("code", "int"):
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)
