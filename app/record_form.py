"""The what-if record form, generated from ``GET /model``'s record schema, and how record values read.

A field added to the record shows up in the form without touching the page (kind, group,
labels, codes, bounds and defaults all come from the API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import pandas as pd
import streamlit as st

from api.responses import FieldInfo, ModelInfo

GROUPS: Mapping[str, str] = {
    "time": ":material/schedule: Time",
    "place": ":material/location_on: Place",
    "conditions": ":material/partly_cloudy_day: Conditions",
    "vehicles": ":material/directions_car: Vehicles",
    "people": ":material/groups: People",
}
# Within a group, fields whose names share a prefix get a sub-heading (first match wins).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("obsm_", "Mobile obstacles hit (number of vehicles)"),
    ("obs_", "Fixed obstacles hit (number of vehicles)"),
    ("choc_", "Points of impact (number of vehicles)"),
    ("manv_", "Manoeuvres before the accident (number of vehicles)"),
    ("nb_trajet_", "Purpose of the trip (number of people)"),
)
COLUMNS = 4
KEY = "whatif."  # prefix of the form's widget keys


class Scenario(TypedDict):
    """A predicted variant kept for comparison."""

    name: str
    record: dict[str, Any]
    probability: float
    label_name: str


def _code_label(field: FieldInfo) -> dict[Any, str]:
    return {c.code: c.label for c in field.codes or []}


def display_value(field: FieldInfo, value: Any) -> str:
    """A value as a person reads it: ``"2 – En agglomération (built-up area)"``, ``"unknown"``."""
    if value is None or value == "":
        return "unknown"
    if field.kind == "code":
        label = _code_label(field).get(value)
        return f"{value} – {label}" if label else str(value)
    return str(value)


def form_defaults(info: ModelInfo) -> dict[str, Any]:
    """The form's starting values: the API's typical real accident, else the schema's defaults."""
    defaults = {f.name: f.default for f in info.features}
    if info.scenario is not None:
        defaults.update({k: v for k, v in info.scenario.record.items() if k in defaults})
    return defaults


def field_widget(field: FieldInfo, default: Any) -> Any:
    """One input for one record field, chosen by its kind, starting at ``default``."""
    field = field.model_copy(update={"default": default})
    key = KEY + field.name
    help_text = f"{field.label_fr} · `{field.name}`"
    if field.minimum == -1:
        help_text += " · -1 = not recorded"
    if field.kind in ("code", "dep") and field.codes:
        codes: list[Any] = [c.code for c in field.codes]
        labels = _code_label(field)
        index = codes.index(field.default) if field.default in codes else 0
        return st.selectbox(
            field.label_en,
            codes,
            index=index,
            format_func=(lambda c: f"{c} – {labels[c]}") if field.kind == "code" else str,
            key=key,
            help=help_text,
        )
    if field.kind == "com":
        text = st.text_input(
            field.label_en,
            value=str(field.default or ""),
            placeholder="unknown, e.g. 75056",
            key=key,
            help=help_text + " · leave empty if unknown",
        )
        return text.strip() or None
    if field.type == "integer":
        return st.number_input(
            field.label_en,
            min_value=int(field.minimum) if field.minimum is not None else None,
            max_value=int(field.maximum) if field.maximum is not None else None,
            value=int(field.default) if isinstance(field.default, int | float) else None,
            step=1,
            key=key,
            help=help_text,
            placeholder="unknown",
        )
    return st.number_input(
        field.label_en,
        min_value=float(field.minimum) if field.minimum is not None else None,
        max_value=float(field.maximum) if field.maximum is not None else None,
        value=float(field.default) if isinstance(field.default, int | float) else None,
        step=0.01,
        format="%.4f",
        key=key,
        help=help_text,
        placeholder="unknown",
    )


def sections(fields: Sequence[FieldInfo]) -> list[tuple[str | None, list[FieldInfo]]]:
    """Fields in schema order, split into sub-headed runs by name prefix."""
    out: list[tuple[str | None, list[FieldInfo]]] = []
    for field in fields:
        title = next((t for prefix, t in SECTIONS if field.name.startswith(prefix)), None)
        if out and out[-1][0] == title:
            out[-1][1].append(field)
        else:
            out.append((title, [field]))
    return out


def record_form(info: ModelInfo, kept: int) -> tuple[bool, str, dict[str, Any]]:
    """The form: (submitted, scenario name, record); ``kept`` scenarios so far name the next one."""
    defaults = form_defaults(info)
    present = [f.group for f in info.features]
    groups = list(dict.fromkeys([*(g for g in GROUPS if g in present), *present]))
    record: dict[str, Any] = {}
    with st.form("whatif_form", border=True):
        tabs = st.tabs([GROUPS.get(g, g.title()) for g in groups])
        for tab, group in zip(tabs, groups, strict=True):
            with tab:
                for title, fields in sections([f for f in info.features if f.group == group]):
                    if title:
                        st.markdown(f"**{title}**")
                    for start in range(0, len(fields), COLUMNS):
                        cols = st.columns(COLUMNS)
                        for col, field in zip(cols, fields[start : start + COLUMNS], strict=False):
                            with col:
                                record[field.name] = field_widget(field, defaults.get(field.name))
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        name = left.text_input("Scenario name", placeholder=f"Scenario {kept + 1}", key="whatif_name")
        submitted = right.form_submit_button(
            "Predict severity", type="primary", icon=":material/query_stats:", width="stretch", key="whatif_submit"
        )
    # Unknown (None) means "use the documented default" for the fields that must have a value.
    optional = {f.name for f in info.features if f.optional}
    clean = {k: v for k, v in record.items() if v is not None or k in optional}
    return submitted, name.strip() or f"Scenario {kept + 1}", clean


def factor_value(value: Any, label: str | None, width: int = 60) -> str:
    """A factor's value, readable and short: the codebook label when there is one."""
    if label:
        text = label
    elif value is None:
        text = "unknown"
    elif isinstance(value, float) and not value.is_integer():
        text = f"{value:.3g}"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def differences(info: ModelInfo, scenarios: Sequence[Scenario]) -> pd.DataFrame:
    """One row per field whose value differs between scenarios, one column per scenario."""
    rows = []
    for field in info.features:
        values = [s["record"].get(field.name, field.default) for s in scenarios]
        if len({repr(v) for v in values}) > 1:
            shown = {s["name"]: display_value(field, v) for s, v in zip(scenarios, values, strict=True)}
            rows.append({"Field": field.label_en, **shown})
    return pd.DataFrame(rows)
