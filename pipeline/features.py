"""Accident records -> model matrix (as ``pipeline.feature_spec.FeatureSpec`` says), and the ``features`` DVC stage.

The derived features are defined once (``_derived``) and computed on columns (batch) or on
one record (API): training, batch scoring and the API build identical rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.config import PROCESSED_DIR, params
from pipeline.feature_spec import TARGET_ENCODED, FeatureSpec, Lookup
from pipeline.ingest import load_interim
from pipeline.record_tables import records_from_tables
from pipeline.records import OBSTACLE_GROUPS, RECORD_FIELDS, TARGET
from pipeline.storage import write_parquet_atomic

log = logging.getLogger(__name__)


def columns_of(frame: pd.DataFrame) -> dict[str, Any]:
    """Record columns of a frame: numbers as numpy arrays (NaN for missing), ``dep`` and ``com`` as Arrow strings.

    Numbers keep their type (most are int32): ``feature_matrix`` casts each column once, to
    float64 for the derived features and straight to float32 for the others.
    """
    cols: dict[str, Any] = {}
    for spec in RECORD_FIELDS:
        s = frame[spec.name]
        if spec.kind in ("dep", "com"):
            cols[spec.name] = pa.array(s, type=pa.string(), from_pandas=True)
        elif isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
            cols[spec.name] = s.to_numpy()
        else:  # nullable integers, Arrow-backed numbers, objects
            cols[spec.name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return cols


def columns_of_record(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One record (a dict, e.g. from the API) as length-1 arrays, filling defaults."""
    cols: dict[str, np.ndarray] = {}
    for spec in RECORD_FIELDS:
        value = record.get(spec.name, spec.default)
        if spec.kind in ("dep", "com"):
            cols[spec.name] = np.array([value], dtype=object)
        else:
            cols[spec.name] = np.array([np.nan if value is None else value], dtype=np.float64)
    return cols


# The derived features are written once (``_derived``), over an ``_Ops`` that does the few
# operations plain operators cannot: numpy arrays for frames (``_ARRAY_OPS``), Python floats
# for one record (``_SCALAR_OPS``, the API's fast path, ~10x cheaper than numpy calls on
# length-1 arrays). Both give the same float64 values, hence the same float32 row:
# tests/test_features.py compares them on every record of the test extract and edge cases.


class _ArrayOps:
    """Operations on record columns as numpy arrays."""

    @staticmethod
    def flag(condition: Any) -> Any:
        return condition.astype(np.float64)

    @staticmethod
    def isin(values: Any, codes: tuple[int, ...]) -> Any:
        return np.isin(values, codes).astype(np.float64)

    @staticmethod
    def maximum(values: Any, floor: float) -> Any:
        return np.maximum(values, floor)

    @staticmethod
    def where(condition: Any, values: Any, other: float) -> Any:
        return np.where(condition, values, other)

    @staticmethod
    def floor(values: Any) -> Any:
        return np.floor(values)

    @staticmethod
    def month(mois: Any) -> Any:
        """Month number 1..12 as an integer (unknown -> 1), for table lookups."""
        return np.clip(np.nan_to_num(mois, nan=1), 1, 12).astype(np.int64)

    @staticmethod
    def take(table: tuple[float, ...], index: Any) -> Any:
        return np.asarray(table, dtype=np.float64)[index]

    @staticmethod
    def encode(values: Any, lookup: Lookup) -> Any:
        return lookup.column(values)

    @staticmethod
    def nan_to_num(values: Any, nan: float) -> Any:
        return np.nan_to_num(values, nan=nan)

    @staticmethod
    def total(columns: Iterable[Any], n: int) -> Any:
        return sum(columns, np.zeros(n))


_FLOAT_MAX = float(np.finfo(np.float64).max)


class _ScalarOps:
    """The same operations on one record's values as Python floats (numpy's semantics:
    NaN propagates and compares false, float results, ``nan_to_num`` clips infinities)."""

    @staticmethod
    def flag(condition: Any) -> float:
        return 1.0 if condition else 0.0

    @staticmethod
    def isin(value: Any, codes: tuple[int, ...]) -> float:
        return 1.0 if value in codes else 0.0

    @staticmethod
    def maximum(value: float, floor: float) -> float:
        # np.maximum propagates NaN: ``value < floor`` is false for NaN.
        return floor if value < floor else value

    @staticmethod
    def where(condition: Any, value: float, other: float) -> float:
        return value if condition else other

    @staticmethod
    def floor(value: float) -> float:
        return float(math.floor(value)) if math.isfinite(value) else value

    @staticmethod
    def month(mois: float) -> int:
        return 1 if math.isnan(mois) else int(min(max(mois, 1.0), 12.0))

    @staticmethod
    def take(table: tuple[float, ...], index: int) -> float:
        return table[index]

    @staticmethod
    def encode(value: Any, lookup: Lookup) -> float:
        return lookup.get(value)

    @staticmethod
    def nan_to_num(value: float, nan: float) -> float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return nan
        return _FLOAT_MAX if value > 0 else -_FLOAT_MAX

    @staticmethod
    def total(values: Iterable[float], n: int) -> float:
        # Left to right from 0.0 like the array path (not ``sum``: Python 3.12 compensates).
        out = 0.0
        for value in values:
            out += value
        return out


_Ops = type[_ArrayOps] | type[_ScalarOps]
_ARRAY_OPS: type[_ArrayOps] = _ArrayOps
_SCALAR_OPS: type[_ScalarOps] = _ScalarOps
# Sakamoto's month offsets.
_MONTH_OFFSETS: tuple[float, ...] = (0.0, 3.0, 2.0, 5.0, 0.0, 3.0, 5.0, 1.0, 4.0, 6.0, 2.0, 4.0)
_FIXED_OBSTACLES: tuple[str, ...] = tuple(name for name in OBSTACLE_GROUPS if name != "obs_sortie_chaussee")


def _weekday(an: Any, mois: Any, jour: Any, ops: _Ops = _ARRAY_OPS) -> Any:
    """Day of week, Monday = 0 (Sakamoto's method)."""
    m = ops.month(mois)
    y = an - (m < 3)
    sunday0 = (
        y + ops.floor(y / 4) - ops.floor(y / 100) + ops.floor(y / 400) + ops.take(_MONTH_OFFSETS, m - 1) + jour
    ) % 7
    return (sunday0 + 6) % 7


def _derived(g: Callable[[str], Any], n: int, spec: FeatureSpec, ops: _Ops) -> dict[str, Any]:
    """The derived features (``feature_spec._DERIVED``) of records read through ``g``: the one definition."""
    vulnerable = g("nb_velo") + g("nb_edp") + g("nb_cyclo") + g("nb_moto") + g("nb_pietons")
    heavy = g("nb_pl") + g("nb_tc") + g("nb_rail") + g("nb_agricole")
    weekday = _weekday(g("an"), g("mois"), g("jour"), ops)
    dep_code = ops.encode(g("dep"), spec.lookups["dep_code"])
    return {
        "weekday": weekday,
        "weekend": ops.flag(weekday >= 5),
        "night": ops.isin(g("lum"), (3, 4, 5)),
        "dep_code": dep_code,
        "overseas": ops.flag(dep_code >= spec.categories["dep"]["971"]),
        "nb_vulnerables": vulnerable,
        "nb_lourds": heavy,
        "nb_2rm": g("nb_cyclo") + g("nb_moto"),
        "seul": ops.flag(g("nb_vehicules") <= 1),
        "usagers_par_vehicule": g("nb_usagers") / ops.maximum(g("nb_vehicules"), 1),
        "vulnerable_vs_lourd": ops.flag((vulnerable > 0) & (heavy > 0)),
        "nb_obs_fixe": ops.total((g(name) for name in _FIXED_OBSTACLES), n),
        "age_ecart": g("age_max") - g("age_min"),
        "hors_agglo_vma": ops.where(g("agg") == 1, g("vma"), math.nan),
        **{
            f"{key}_te": ops.nan_to_num(ops.encode(g(key), spec.lookups[f"{key}_te"]), nan=spec.prior)
            for key in TARGET_ENCODED
        },
        "com_accidents": ops.nan_to_num(ops.encode(g("com"), spec.lookups["com_accidents"]), nan=0.0),
    }


def feature_matrix(cols: Mapping[str, Any], spec: FeatureSpec) -> np.ndarray:
    """Build the float32 model input, in ``spec.columns`` order, from record columns."""
    as_float: dict[str, Any] = {}

    def g(name: str) -> Any:
        """A column as ``_derived`` computes with it: float64, whatever it was stored as."""
        if name not in as_float:
            values = cols[name]
            numeric = isinstance(values, np.ndarray) and values.dtype.kind in "iuf"
            as_float[name] = values.astype(np.float64, copy=False) if numeric else values
        return as_float[name]

    n = len(cols["heure"])
    with np.errstate(invalid="ignore", divide="ignore"):
        derived = _derived(g, n, spec, _ARRAY_OPS)
    out = np.empty((n, len(spec.columns)), dtype=np.float32)
    for j, name in enumerate(spec.columns):
        # An integer column goes to float32 directly: the same value as through float64.
        out[:, j] = derived[name] if name in derived else cols[name]
    return out


# (name, default, kept as is) of each record field: ``dep`` and ``com`` stay strings.
_RECORD_READERS: tuple[tuple[str, Any, bool], ...] = tuple(
    (f.name, f.default, f.kind in ("dep", "com")) for f in RECORD_FIELDS
)


def record_row(record: Mapping[str, Any], spec: FeatureSpec) -> np.ndarray:
    """The model row (1 x n float32) of one record, missing fields at their defaults.

    The single-record path of ``feature_matrix(columns_of_record(record), spec)``: same
    definitions (``_derived``) on Python floats instead of length-1 arrays, same row bit for bit.
    """
    values: dict[str, Any] = {}
    for name, default, as_is in _RECORD_READERS:
        value = record.get(name, default)
        values[name] = value if as_is else (math.nan if value is None else float(value))
    derived = _derived(values.__getitem__, 1, spec, _SCALAR_OPS)
    return np.array([[derived[c] if c in derived else values[c] for c in spec.columns]], dtype=np.float32)


def frame_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Model input for a frame of records."""
    return feature_matrix(columns_of(frame), spec)


def build_year(year: int, interim: Mapping[str, pd.DataFrame], max_vma: int) -> pd.DataFrame:
    """Records and target for one year's typed tables."""
    records = records_from_tables(interim, max_vma=max_vma)
    log.info("%s: %d accidents, %.1f%% severe", year, len(records), 100 * records[TARGET].mean())
    return records


def main() -> None:
    """DVC entry point: one records table per year."""
    p = params()
    for year in p.ingest.years:
        records = build_year(year, load_interim(year), p.features.max_vma)
        write_parquet_atomic(records, PROCESSED_DIR / f"accidents_{year}.parquet")


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
