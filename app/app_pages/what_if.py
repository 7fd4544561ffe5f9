"""What-if: describe one accident, get its probability and the factors behind it; compare variants.

The form (``app.record_form``) is generated from ``GET /model``'s record schema (kind, group, labels, codes, bounds,
defaults): a field added to the record shows up here without touching this page. It opens on
the typical real training accident the API serves (``scenario``), and the place is picked by
name from ``GET /places``, which sets the department, commune code and coordinates together.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from api.responses import ModelInfo, Place, PredictionResponse
from app import client, layout
from app.charts.risk import factor_bars, probability_gauge, scenario_bars
from app.charts.style import CHART_CONFIG
from app.client import ApiError
from app.formatting import count, percent
from app.record_form import KEY, Scenario, differences, factor_value, record_form

TOP_FACTORS = 10
MAX_SCENARIOS = 5
RESULT = "whatif_result"
SCENARIOS = "whatif_scenarios"
PLACE = "whatif_place"  # the selected place's code ("" = unknown place)
PLACE_QUERY = "whatif_place_query"
PLACES_SEEN = "whatif_places_seen"  # code -> Place of every place listed so far
UNKNOWN_PLACE = ""
PLACE_RESULTS = 50


# --- the form


def reset_form() -> None:
    """Forget every form value and the place: the widgets come back with the typical accident."""
    for key in [k for k in st.session_state if str(k).startswith(KEY) or k in (PLACE, PLACE_QUERY)]:
        del st.session_state[key]


# --- the place, by name


def place_label(place: Place | None) -> str:
    """``"Lyon 3e Arrondissement (69383, dep 69) · 1,234 training accidents"``."""
    if place is None:
        return "Unknown place (no commune, no coordinates)"
    accidents = f"{count(place.accidents)} training accident{'' if place.accidents == 1 else 's'}"
    return f"{place.name} ({place.code}, dep {place.dep}) · {accidents}"


def apply_place() -> None:
    """Set the department, commune and coordinates of the form from the selected place."""
    code = st.session_state.get(PLACE, UNKNOWN_PLACE)
    place: Place | None = st.session_state.get(PLACES_SEEN, {}).get(code)
    if place is None:
        st.session_state[KEY + "com"] = ""
        st.session_state[KEY + "lat"] = None
        st.session_state[KEY + "long"] = None
        return
    st.session_state[KEY + "dep"] = place.dep
    st.session_state[KEY + "com"] = place.code
    st.session_state[KEY + "lat"] = place.lat
    st.session_state[KEY + "long"] = place.long


def place_picker(info: ModelInfo) -> None:
    """Search a commune by name; picking one fills the place fields of the form."""
    seen: dict[str, Place] = st.session_state.setdefault(PLACES_SEEN, {})
    start = info.scenario.com if info.scenario is not None else UNKNOWN_PLACE
    if start and start not in seen:
        try:
            seen.update({p.code: p for p in client.places(start, limit=1).places if p.code == start})
        except ApiError as exc:
            layout.show_api_error(exc, "Looking the place up")
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    query = left.text_input(
        "Search a commune",
        key=PLACE_QUERY,
        placeholder="e.g. Lyon, Marseille 8e, Saint-Étienne, 69383",
        help="Name or INSEE code; Paris, Lyon and Marseille are listed by arrondissement, as in BAAC.",
    )
    try:
        found = client.places(query, limit=PLACE_RESULTS)
    except ApiError as exc:
        layout.show_api_error(exc, "Searching places")
        return
    seen.update({p.code: p for p in found.places})
    selected = st.session_state.get(PLACE, start)
    codes = list(dict.fromkeys([selected, *(p.code for p in found.places), UNKNOWN_PLACE]))
    right.selectbox(
        f"Place of the accident ({count(found.total)} matching, most training accidents first)",
        codes,
        index=0,  # the current place (the typical accident's at first)
        key=PLACE,
        format_func=lambda code: place_label(seen.get(code)),
        on_change=apply_place,
        help="Sets the department, the commune code and the coordinates (the centre of the commune's "
        "training accidents) together. Choose 'Unknown place' to leave the commune and coordinates empty.",
    )


# --- the prediction


def show_prediction(result: dict[str, Any]) -> None:
    """Probability gauge, label against the threshold, the contributing factors, and "keep it"."""
    response: PredictionResponse = result["response"]
    st.subheader(f"Prediction: {result['name']}", anchor=False)
    left, right = st.columns([2, 3], gap="large", vertical_alignment="center")
    severe = response.label == 1
    with left:
        st.plotly_chart(
            probability_gauge(response.probability, response.threshold),
            config=CHART_CONFIG,
            key="whatif_gauge",
        )
    with right:
        st.markdown("### :red[Severe]" if severe else "### :blue[Not severe]")
        side = "at or above" if severe else "below"
        st.markdown(
            f"A probability of **{percent(response.probability)}** that someone was killed or hospitalised, "
            f"{side} the decision threshold of {percent(response.threshold)}."
        )
        st.caption(f"Model {response.model.name} v{response.model.version} (@{response.model.alias}).")
        full = len(st.session_state.get(SCENARIOS, [])) >= MAX_SCENARIOS
        added = bool(result.get("added"))
        st.button(
            "Added to the comparison" if added else "Add this scenario to the comparison",
            on_click=add_scenario,
            disabled=full or added,
            icon=":material/add_chart:",
            key="whatif_add",
            help=f"At most {MAX_SCENARIOS} scenarios: remove one first." if full else None,
        )
    if response.explanation is not None and response.explanation.factors:
        factors = response.explanation.factors
        fig = factor_bars(
            [f.label_en for f in factors],
            [factor_value(f.value, f.value_label) for f in factors],
            [f.contribution for f in factors],
            [f"{f.label_fr} ({f.feature})" for f in factors],
        )
        st.markdown("**What drives this prediction**")
        st.plotly_chart(fig, config=CHART_CONFIG, key="whatif_factors")
        st.caption(
            f"The {len(factors)} features that moved this accident's score the most away from the average "
            "accident (SHAP values, in log-odds), each with its value: red raises the risk, blue lowers it."
        )


# --- the comparison


def add_scenario() -> None:
    """Keep the last prediction as a scenario (at most ``MAX_SCENARIOS``)."""
    result = st.session_state.get(RESULT)
    scenarios: list[Scenario] = st.session_state.setdefault(SCENARIOS, [])
    if result is None or len(scenarios) >= MAX_SCENARIOS:
        return
    names = {s["name"] for s in scenarios}
    name, i = result["name"], 2
    while name in names:
        name, i = f"{result['name']} ({i})", i + 1
    response: PredictionResponse = result["response"]
    result["added"] = True
    scenarios.append(
        Scenario(name=name, record=result["record"], probability=response.probability, label_name=response.label_name)
    )


def remove_scenario(index: int) -> None:
    """Drop one scenario."""
    scenarios: list[Scenario] = st.session_state.get(SCENARIOS, [])
    if 0 <= index < len(scenarios):
        scenarios.pop(index)


def clear_scenarios() -> None:
    """Drop every scenario."""
    st.session_state[SCENARIOS] = []


def comparison(info: ModelInfo, threshold: float) -> None:
    """Bar chart of the kept scenarios, what differs between them, and removal buttons."""
    scenarios: list[Scenario] = st.session_state.get(SCENARIOS, [])
    st.subheader(f"Compare scenarios ({len(scenarios)} of {MAX_SCENARIOS})", anchor=False)
    if not scenarios:
        st.caption(
            "Predict an accident, then add it to the comparison; change a few fields, predict again and "
            "add the variant to see how the probability moves."
        )
        return
    left, right = st.columns([2, 3], gap="large")
    with left:
        fig = scenario_bars([s["name"] for s in scenarios], [s["probability"] for s in scenarios], threshold)
        st.plotly_chart(fig, config=CHART_CONFIG, key="whatif_scenarios_chart")
        st.caption(f"Dashed line: the decision threshold ({percent(threshold)}); red bars are predicted severe.")
    with right:
        diff = differences(info, scenarios)
        if len(scenarios) > 1 and diff.empty:
            st.info("These scenarios have the same values in every field.", icon=":material/info:")
        elif not diff.empty:
            st.markdown("**What differs between the scenarios**")
            st.dataframe(diff, hide_index=True)
        summary = pd.DataFrame(
            {
                "Scenario": [s["name"] for s in scenarios],
                "Probability": [percent(s["probability"]) for s in scenarios],
                "Prediction": [s["label_name"] for s in scenarios],
            }
        )
        st.dataframe(summary, hide_index=True)
    with st.container(horizontal=True):
        for i, scenario in enumerate(scenarios):
            st.button(
                scenario["name"],
                key=f"whatif_remove_{i}",
                on_click=remove_scenario,
                args=(i,),
                icon=":material/close:",
                help=f"Remove {scenario['name']} from the comparison",
            )
        st.button("Clear all", key="whatif_clear", on_click=clear_scenarios, icon=":material/delete:", type="tertiary")


status = layout.require_ready(layout.api_status())
info = layout.model_info(status)

st.title("What-if", anchor=False)
st.markdown(
    "Describe an accident, field by field as in the BAAC files, and see how likely it is to be severe and "
    "why. Unknown optional fields can be left empty."
)
scenario_info = info.scenario
if scenario_info is not None:
    where = scenario_info.place_name or f"commune {scenario_info.com}"
    st.info(
        f"The form opens on a **real accident of the training data** (BAAC no. {scenario_info.accident_id}, "
        f"{'severe' if scenario_info.severe else 'not severe'}) in **{where}**, the place with the most "
        f"training accidents ({count(scenario_info.commune_accidents)}). Of the accidents there with every field "
        f"known, it is the one that matches the most of the place's most common values "
        f"({scenario_info.fields_matching_mode} of {scenario_info.fields_compared} fields).",
        icon=":material/info:",
    )
else:
    st.caption("This model carries no typical accident: the form starts at the schema's default values.")
place_picker(info)
st.button(
    "Reset the form to the typical accident", on_click=reset_form, icon=":material/restart_alt:", key="whatif_reset"
)
submitted, name, record = record_form(info, len(st.session_state.get(SCENARIOS, [])))
if submitted:
    try:
        response = client.predict(record, explain=True, top=TOP_FACTORS)
    except ApiError as exc:
        layout.show_api_error(exc, "The prediction")
    else:
        st.session_state[RESULT] = {"name": name, "record": record, "response": response}

result = st.session_state.get(RESULT)
if result is not None:
    show_prediction(result)
st.divider()
comparison(info, info.threshold)
