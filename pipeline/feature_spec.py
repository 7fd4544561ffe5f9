"""The model's feature contract: column order, category maps, target encodings (``FeatureSpec``).

What serving needs to rebuild the model's input is logged with the model, so training,
batch scoring and the API build identical rows. ``fit_spec`` learns it from training rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import codebook
from pipeline.records import DEPARTMENTS, RECORD_FIELDS

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
