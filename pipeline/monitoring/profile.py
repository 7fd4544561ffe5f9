"""The reference profile: how the training records and scores were distributed.

Made once at training time from the training records and the model's probabilities on
them, stored with the registered model (``profile.json``), and compared with every scored
file by ``pipeline.monitoring.drift``. Each record field (``RECORD_FIELDS``) gets buckets:

* numbers (``int``, ``float``): cut points at the training quantiles, so each bucket holds
  about the same share of training rows (fewer buckets when values repeat, as counts of 0
  do), plus a bucket for missing values;
* codes, departments and communes: the commonest training categories (at most
  ``max_categories``, each at least ``min_share`` of the rows), one bucket for every other
  category, seen or not at training, and one for missing values.

Bucketing new data the same way (``FieldProfile.counts``) gives the two count vectors PSI
and the chi-square test compare.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import RECORD_FIELDS

PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"  # its name among the registered model's artifacts
SCORE_FIELD = "proba"
OTHER = "(other)"
MISSING = "(missing)"
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 40
DEFAULT_MIN_SHARE = 0.002


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericProfile(_Frozen):
    """Buckets of a number: ``x <= cuts[0]``, ``cuts[0] < x <= cuts[1]``, ..., ``x > cuts[-1]``, missing."""

    kind: Literal["numeric"] = "numeric"
    cuts: tuple[float, ...]
    counts: tuple[int, ...]  # one per bucket, the missing bucket last

    def labels(self) -> list[str]:
        """A readable name per bucket, in ``counts`` order."""
        if not self.cuts:
            return ["all", MISSING]
        c = [f"{v:g}" for v in self.cuts]
        inner = [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(c)]
        return [f"<= {c[0]}", *inner, f"> {c[-1]}", MISSING]

    def bucket_counts(self, values: pd.Series) -> np.ndarray:
        """Counts of ``values`` in this profile's buckets."""
        cuts = np.asarray(self.cuts, dtype=np.float64)
        integers = _integers(values)
        if integers is not None:
            present, missing_rows = integers
            per_value, low = _value_counts(present)
            # Each distinct value is put in its bucket once, not each row: the same buckets, ~5x cheaper.
            bucket = np.searchsorted(cuts, np.arange(low, low + len(per_value), dtype=np.float64), side="left")
            counts = np.bincount(bucket, weights=per_value, minlength=len(cuts) + 1).astype(np.int64)
            return np.append(counts, missing_rows).astype(np.int64)
        x = _as_float(values)
        missing = np.isnan(x)
        index = np.searchsorted(cuts, x[~missing], side="left")
        counts = np.bincount(index, minlength=len(cuts) + 1)
        return np.append(counts, int(missing.sum())).astype(np.int64)


class CategoricalProfile(_Frozen):
    """Buckets of a code: one per kept category, then every other category, then missing."""

    kind: Literal["categorical"] = "categorical"
    categories: tuple[str, ...]
    counts: tuple[int, ...]  # kept categories, other, missing

    def labels(self) -> list[str]:
        """A readable name per bucket, in ``counts`` order."""
        return [*self.categories, OTHER, MISSING]

    def bucket_counts(self, values: pd.Series) -> np.ndarray:
        """Counts of ``values`` in this profile's buckets (unseen categories count as other)."""
        seen, missing = category_counts(values)
        kept = seen.reindex(list(self.categories), fill_value=0).to_numpy(dtype=np.int64)
        other = int(seen.sum()) - int(kept.sum())
        return np.concatenate([kept, [other, missing]]).astype(np.int64)


FieldProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class Profile(_Frozen):
    """The training distribution of every record field and of the model's probabilities."""

    version: int = PROFILE_VERSION
    rows: int
    fields: dict[str, FieldProfile]
    score: NumericProfile
    score_mean: float

    def to_json(self) -> str:
        """The profile as JSON (the artifact stored with the model)."""
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        """Inverse of ``to_json``."""
        return cls.model_validate_json(text)


# Integer columns spanning at most this many values per row are counted by value (np.bincount).
_MAX_SPAN_PER_ROW = 4


def _integers(values: pd.Series) -> tuple[np.ndarray, int] | None:
    """An integer column's present values (int64) and its number of missing rows; None for any other
    column, or one whose values spread too wide to be counted by value."""
    if not pd.api.types.is_integer_dtype(values.dtype):
        return None
    if isinstance(values.dtype, np.dtype):  # numpy integers: none missing, no conversion
        present, n_missing = values.to_numpy(), 0
    else:  # nullable integers
        missing = values.isna().to_numpy()
        n_missing = int(missing.sum())
        present = values.to_numpy(dtype=np.int64, na_value=0)[~missing]
    if len(present) and int(present.max()) - int(present.min()) > _MAX_SPAN_PER_ROW * len(present):
        return None
    return present, n_missing


def _value_counts(present: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows per value of integers, from the smallest (returned) to the largest."""
    if len(present) == 0:
        return np.zeros(0, dtype=np.int64), 0
    low = int(present.min())
    return np.bincount(present.astype(np.intp) - low), low


def _as_float(values: pd.Series) -> np.ndarray:
    """Numbers as float64, NaN for missing or non-numbers."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf":
        return values.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(values.dtype):  # nullable Int/Float: straight to float64 with NaN
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def category_counts(values: pd.Series) -> tuple[pd.Series, int]:
    """Rows per category (as text: "1", "75", "2A004"; 1, 1.0 and "1" are the same code) and missing rows."""
    integers = _integers(values)
    if integers is not None:
        present, missing_rows = integers
        per_value, low = _value_counts(present)
        seen = np.flatnonzero(per_value)
        names = [f"{c:.0f}" for c in (seen + low).astype(np.float64)]
        return pd.Series(per_value[seen], index=names, dtype=np.int64), missing_rows
    if pd.api.types.is_numeric_dtype(values.dtype):
        x = _as_float(values)
        present = x[~np.isnan(x)]
        # Few distinct codes: count the numbers, then name the handful of codes.
        codes, counts = np.unique(present, return_counts=True)
        names = [f"{c:.0f}" if c == np.floor(c) else f"{c:g}" for c in codes]
        return pd.Series(counts, index=names, dtype=np.int64), len(x) - len(present)
    text = pa.array(values, type=pa.string(), from_pandas=True)
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    counted = text.drop_null().value_counts()
    series = pd.Series(
        counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64),
        index=counted.field("values").to_pylist(),
    )
    return series, int(text.null_count)


def numeric_profile(values: pd.Series, bins: int = DEFAULT_BINS) -> NumericProfile:
    """Quantile buckets of a number (at most ``bins`` of them, fewer when values repeat)."""
    x = _as_float(values)
    present = x[~np.isnan(x)]
    if len(present) == 0:
        cuts: tuple[float, ...] = ()
    else:
        # Inner quantiles only: the lowest and highest buckets are open-ended.
        quantiles = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
        cuts = tuple(float(v) for v in np.unique(quantiles))
    profile = NumericProfile(cuts=cuts, counts=(0,) * (len(cuts) + 2))
    return profile.model_copy(update={"counts": tuple(int(c) for c in profile.bucket_counts(values))})


def categorical_profile(
    values: pd.Series, max_categories: int = DEFAULT_MAX_CATEGORIES, min_share: float = DEFAULT_MIN_SHARE
) -> CategoricalProfile:
    """The commonest categories (at most ``max_categories``, each >= ``min_share`` of rows); the rest is other."""
    seen, _ = category_counts(values)
    seen = seen[seen >= max(1.0, min_share * len(values))]
    # Ties broken by code, so the same data always gives the same profile.
    order = sorted(seen.items(), key=lambda kv: (-kv[1], str(kv[0])))[:max_categories]
    profile = CategoricalProfile(categories=tuple(str(k) for k, _ in order), counts=())
    return profile.model_copy(update={"counts": tuple(int(c) for c in profile.bucket_counts(values))})


def field_profile(name: str, values: pd.Series, bins: int, max_categories: int, min_share: float) -> FieldProfile:
    """The profile of one record field, by its kind."""
    kind = _KINDS[name]
    if kind == "numeric":
        return numeric_profile(values, bins)
    return categorical_profile(values, max_categories, min_share)


_KINDS: Mapping[str, Literal["numeric", "categorical"]] = {
    f.name: "numeric" if f.kind in ("int", "float") else "categorical" for f in RECORD_FIELDS
}


def build_profile(
    records: pd.DataFrame,
    proba: np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    min_share: float = DEFAULT_MIN_SHARE,
) -> Profile:
    """Profile the training records (every field of ``RECORD_FIELDS``) and the model's probabilities on them."""
    if len(records) != len(proba):
        raise ValueError(f"{len(records)} records but {len(proba)} probabilities")
    if len(records) == 0:
        raise ValueError("cannot profile zero records")
    missing = [f.name for f in RECORD_FIELDS if f.name not in records.columns]
    if missing:
        raise ValueError(f"records lack fields {missing}")
    fields = {f.name: field_profile(f.name, records[f.name], bins, max_categories, min_share) for f in RECORD_FIELDS}
    scores = pd.Series(np.asarray(proba, dtype=np.float64))
    return Profile(
        rows=len(records), fields=fields, score=numeric_profile(scores, bins), score_mean=float(scores.mean())
    )
