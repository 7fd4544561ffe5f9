"""Stage ``validate``: check the typed tables lazily and report every failure at once.

Failures are counted per check in ``data/reports/validation.json`` with example rows.
The stage fails when a check fails on more rows than params.yaml allows; the real
2020 and 2021 files pass, and the anomalies they carry are listed in data/README.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pandera.errors
import pandera.pandas as pa

from pipeline import schemas
from pipeline.config import DATA_REPORTS_DIR, ValidateParams, params
from pipeline.errors import InputError
from pipeline.raw_tables import load_interim
from pipeline.storage import write_json_atomic

log = logging.getLogger(__name__)


def table_schemas(year: int, tables: Mapping[str, pd.DataFrame]) -> dict[str, pa.DataFrameSchema]:
    """The four schemas, with cross-table key sets taken from the tables themselves."""
    accidents = set(tables["caracteristiques"]["Num_Acc"])
    return {
        "caracteristiques": schemas.caracteristiques(year),
        "lieux": schemas.lieux(accidents),
        "vehicules": schemas.vehicules(accidents),
        "usagers": schemas.usagers(accidents, schemas.vehicle_keys(tables["vehicules"])),
    }


def failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Every failure case of a lazy validation (empty when the table is valid)."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(columns=["schema_context", "column", "check", "failure_case", "index"])


def summarise(table: str, frame: pd.DataFrame, cases: pd.DataFrame, vp: ValidateParams) -> list[dict[str, Any]]:
    """One entry per (column, check): count, rate, pass/fail against the budget, examples."""
    out: list[dict[str, Any]] = []
    if cases.empty:
        return out
    cases = cases.assign(column=cases["column"].fillna("<table>").astype(str), check=cases["check"].astype(str))
    # Row-level checks (keys, cross-table links) come back once per column: keep one per row.
    row_level = (cases["schema_context"] == "DataFrameSchema") & (cases["check"] == "vehicle_exists")
    cases.loc[row_level, "column"] = "Num_Acc, id_vehicule"
    cases = cases.drop_duplicates(["column", "check", "index"])
    budget = max(vp.max_failures, int(vp.max_failure_rate * len(frame)))
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        rows = group["index"].dropna()
        count = int(rows.nunique()) if len(rows) else len(group)
        examples = []
        for idx in rows.drop_duplicates().head(vp.examples_per_check):
            idx = int(idx)
            row = frame.iloc[idx] if 0 <= idx < len(frame) else None
            examples.append(
                {
                    "line": idx + 2,
                    "value": None if row is None else _value(row, column),
                    "Num_Acc": None if row is None else int(row["Num_Acc"]),
                }
            )
        if not examples:
            examples = [{"value": str(v)} for v in group["failure_case"].head(vp.examples_per_check)]
        out.append(
            {
                "table": table,
                "column": column,
                "check": check,
                "failures": count,
                "rate": round(count / max(len(frame), 1), 6),
                "allowed": budget,
                "ok": count <= budget,
                "examples": examples,
            }
        )
    return out


def _value(row: pd.Series, column: str) -> str:
    names = [c.strip() for c in column.split(",")]
    return ", ".join(str(row[c]) for c in names if c in row.index)


def validate_year(year: int, tables: Mapping[str, pd.DataFrame], vp: ValidateParams) -> dict[str, Any]:
    """Validate one year; returns the report section for it."""
    checks: list[dict[str, Any]] = []
    for table, schema in table_schemas(year, tables).items():
        checks.extend(summarise(table, tables[table], failures(schema, tables[table]), vp))
    return {
        "rows": {t: len(f) for t, f in tables.items()},
        "checks": checks,
        "failed": [c for c in checks if not c["ok"]],
    }


def readable(report: Mapping[str, Any]) -> str:
    """One line per failed check."""
    lines = []
    for year, section in report["years"].items():
        for c in section["failed"]:
            lines.append(
                f"{year} {c['table']}.{c['column']}: check {c['check']} failed on {c['failures']} rows "
                f"(allowed {c['allowed']}), e.g. line {c['examples'][0].get('line', '?')} "
                f"value {c['examples'][0].get('value')!r}"
            )
    return "\n".join(lines)


def main() -> None:
    """DVC entry point."""
    p = params()
    report: dict[str, Any] = {"years": {}}
    for year in p.ingest.years:
        report["years"][str(year)] = validate_year(year, load_interim(year), p.validate_)
    report["ok"] = not any(s["failed"] for s in report["years"].values())
    write_json_atomic(report, DATA_REPORTS_DIR / "validation.json")
    tolerated = [c for s in report["years"].values() for c in s["checks"] if c["ok"]]
    for c in tolerated:
        log.warning("tolerated: %s.%s %s on %d rows", c["table"], c["column"], c["check"], c["failures"])
    if not report["ok"]:
        raise InputError("validation failed:\n" + readable(report), file=DATA_REPORTS_DIR / "validation.json")


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
