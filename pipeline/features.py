"""Accident records -> model matrix, and the ``features`` DVC stage.

This is the only place that knows the model's column order and encodings. What it
needs at serving time (``FeatureSpec``) is logged with the model, so training, batch
scoring and the API build identical rows.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import codebook
from pipeline.config import PROCESSED_DIR, params
from pipeline.ingest import load_interim
from pipeline.record_tables import records_from_tables
from pipeline.records import DEPARTMENTS, OBSTACLE_GROUPS, RECORD_FIELDS, TARGET
from pipeline.storage import write_parquet_atomic

log = logging.getLogger(__name__)

FEATURE_SPEC_VERSION = 2
# Record fields used as they are (identifiers and calendar parts handled below).
_PASSTHROUGH: tuple[str, ...] = tuple(f.name for f in RECORD_FIELDS if f.name not in ("an", "jour", "dep", "com"))
# Place codes with many levels are target-encoded: the severe rate of the place, learnt on
# the training fold only, shrunk towards the overall rate by ``TE_SMOOTHING`` pseudo-counts.
TARGET_ENCODED: Mapping[str, int] = {"dep": 50, "com": 20}
_DERIVED: tuple[str, ...] = (
    "weekday",
    "weekend",
    "night",
    "dep_code",
    "overseas",
    "nb_vulnerables",
    "nb_lourds",
    "nb_2rm",
    "seul",
    "usagers_par_vehicule",
    "vulnerable_vs_lourd",
    "nb_obs_fixe",
    "age_ecart",
    "hors_agglo_vma",
    "dep_te",
    "com_te",
    "com_accidents",
)
FEATURE_COLUMNS: tuple[str, ...] = _PASSTHROUGH + _DERIVED


class Lookup:
    """A code -> number map (department index, target rate, accident count) and its column form.

    A column is looked up in one hashing pass of Arrow's ``index_in`` over the map's keys,
    built once per model: a dict lookup per row would cost more than all the other features.
    """

    def __init__(self, mapping: Mapping[str, float]) -> None:
        self.mapping = mapping
        self._keys = pa.array(list(mapping), type=pa.string())
        self._values = np.append(np.fromiter(mapping.values(), dtype=np.float64, count=len(mapping)), np.nan)

    def get(self, value: Any) -> float:
        """The number of one code, NaN when unknown."""
        return float(self.mapping.get(value, math.nan))

    def column(self, values: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The numbers of a column of codes (strings, null when missing), NaN when unknown."""
        if isinstance(values, np.ndarray):
            if len(values) <= 32:  # one API record or a few: cheaper than building an Arrow array
                return np.array([self.mapping.get(v, np.nan) for v in values], dtype=np.float64)
            values = pa.array(values, type=pa.string(), from_pandas=True)
        index = pc.fill_null(pc.index_in(values, value_set=self._keys), len(self._values) - 1)
        return self._values[index.to_numpy()]


@dataclass(frozen=True)
class FeatureSpec:
    """What serving needs to rebuild the model's input: column order and category maps."""

    columns: tuple[str, ...] = FEATURE_COLUMNS
    categories: Mapping[str, Mapping[str, int]] = field(
        default_factory=lambda: {"dep": {d: i for i, d in enumerate(DEPARTMENTS)}}
    )
    target_rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    prior: float = 0.5
    # Accidents per commune in the training rows: how urban / accident-prone the place is.
    com_counts: Mapping[str, int] = field(default_factory=dict)
    # Speed limits above this were data-entry errors in training (``features.max_vma``): serving
    # applies the model's value, never the checkout's params.yaml.
    max_vma: int = 130
    codebook_version: str = codebook.CODEBOOK_VERSION
    version: int = FEATURE_SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["columns"] = list(self.columns)
        d["categories"] = {k: dict(v) for k, v in self.categories.items()}
        d["target_rates"] = {k: dict(v) for k, v in self.target_rates.items()}
        d["com_counts"] = dict(self.com_counts)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of ``to_dict``; unknown columns fail loudly."""
        unknown = set(data["columns"]) - set(FEATURE_COLUMNS)
        if unknown:
            raise ValueError(f"model expects features this code cannot build: {sorted(unknown)}")
        return cls(
            columns=tuple(data["columns"]),
            categories={k: dict(v) for k, v in data["categories"].items()},
            target_rates={k: dict(v) for k, v in data["target_rates"].items()},
            prior=float(data["prior"]),
            com_counts=dict(data["com_counts"]),
            max_vma=int(data["max_vma"]),
            codebook_version=data["codebook_version"],
            version=int(data["version"]),
        )

    def to_json(self) -> str:
        """Serialise."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @cached_property
    def lookups(self) -> dict[str, Lookup]:
        """The maps ``_derived`` applies, by the feature they make."""
        return {
            "dep_code": Lookup(self.categories["dep"]),
            **{f"{key}_te": Lookup(self.target_rates.get(key, {})) for key in TARGET_ENCODED},
            "com_accidents": Lookup(self.com_counts),
        }


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
    """The derived features (``_DERIVED``) of records read through ``g``: the one definition."""
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


def target_rates(keys: pd.Series, target: np.ndarray, smoothing: int) -> tuple[dict[str, float], float]:
    """Smoothed severe rate per key (and the prior), from training rows only."""
    prior = float(np.mean(target))
    stats = (
        pd.DataFrame({"k": keys.astype(object).to_numpy(), "y": target})
        .dropna()
        .groupby("k")["y"]
        .agg(["sum", "count"])
    )
    rates = (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing)
    return {str(k): float(v) for k, v in rates.items()}, prior


def fit_spec(records: pd.DataFrame, target: np.ndarray, max_vma: int) -> FeatureSpec:
    """A feature spec whose target encodings are learnt on ``records`` (training rows only).

    ``max_vma`` is the cap the ``features`` stage applied to these records; serving applies the same.
    """
    rates: dict[str, dict[str, float]] = {}
    prior = float(np.mean(target))
    for key, smoothing in TARGET_ENCODED.items():
        rates[key], prior = target_rates(records[key], target, smoothing)
    counts = records["com"].dropna().astype(str).value_counts()
    return FeatureSpec(
        target_rates=rates, prior=prior, com_counts={str(k): int(v) for k, v in counts.items()}, max_vma=max_vma
    )


def out_of_fold_encodings(records: pd.DataFrame, target: np.ndarray, folds: int, seed: int) -> dict[str, np.ndarray]:
    """Target encodings for the fitting rows, each computed without its own fold.

    Encoding a training row with a rate that includes its own label leaks it; the
    fitted model would over-trust the encoding.
    """
    fold = np.random.default_rng(seed).permutation(np.arange(len(records)) % folds)
    out = {key: np.empty(len(records)) for key in TARGET_ENCODED}
    for k in range(folds):
        fit, apply = fold != k, fold == k
        for key, smoothing in TARGET_ENCODED.items():
            rates, prior = target_rates(records[key][fit], target[fit], smoothing)
            keys = pa.array(records[key][apply], type=pa.string(), from_pandas=True)
            out[key][apply] = np.nan_to_num(Lookup(rates).column(keys), nan=prior)
    return out


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
