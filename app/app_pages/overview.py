"""Overview: the model card, test-year metrics beside the promotion gate and the seed project."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from api.responses import ModelInfo
from app import client, layout
from app.charts.metrics import metric_comparison
from app.charts.style import CHART_CONFIG
from app.formatting import count, decimal, percent, signed_points, timestamp

METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "f1": "F1",
    "recall": "Recall",
    "precision": "Precision",
    "accuracy": "Accuracy",
    "brier": "Brier score",
}
GATE_METRICS = {"min_roc_auc": "roc_auc", "min_f1": "f1", "min_recall": "recall"}
METRIC_HELP = {
    "roc_auc": "Chance that a severe accident gets a higher score than a non-severe one (0.5 = coin toss).",
    "f1": "Balance of precision and recall at the decision threshold.",
    "recall": "Share of the severe accidents that the model flags.",
    "precision": "Share of the flagged accidents that were indeed severe.",
    "accuracy": "Share of accidents classified correctly.",
}


def gate_minimums(info: ModelInfo) -> dict[str, float]:
    """Gate minimums by metric, as the API reports them."""
    gate = dict(info.gate.thresholds or {}) if info.gate else {}
    return {metric: float(gate[key]) for key, metric in GATE_METRICS.items() if key in gate}


def years(values: list[int] | None) -> str:
    """``[2020]`` -> ``"2020"``; unknown -> an em dash."""
    return ", ".join(str(y) for y in values) if values else "—"


def model_card(info: ModelInfo) -> None:
    """Identity, threshold and training data."""
    st.subheader("Model card", anchor=False)
    alias = f" · alias **@{info.alias}**" if info.alias else ""
    st.markdown(f"Registered model **{info.name or '—'}** · version **{info.version or '—'}**{alias}")
    rows = info.training.rows or {}
    test = info.metrics.get("test", {})
    n, positives = test.get("n"), test.get("positives")
    share = f"; {percent(positives / n)} severe" if isinstance(n, int) and isinstance(positives, int) and n else ""
    fit, valid, final = rows.get("fit"), rows.get("valid"), rows.get("final_model")
    refit = final is not None and fit is not None and final != fit
    top = st.columns(3, border=True)
    top[0].metric(
        "Decision threshold",
        percent(info.threshold),
        help="Accidents whose probability reaches this value are predicted severe "
        "(chosen on the validation split of the training years).",
    )
    top[1].metric("Training years", years(info.training.train_years))
    top[2].metric("Test year", years(info.training.test_years))
    cols = st.columns(4, border=True)
    cols[0].metric(
        "Training accidents",
        count(final),
        help="Accidents the served model was fitted on"
        + (": every accident of the training years (fit and validation splits together)." if refit else "."),
    )
    cols[1].metric(
        "Fit split",
        count(fit),
        help="Part of the training years the early-stopping model was fitted on.",
    )
    cols[2].metric(
        "Validation split",
        count(valid),
        help="Part of the training years held out to choose the number of trees and the threshold.",
    )
    cols[3].metric(
        "Test accidents",
        count(n) if isinstance(n, int | float) else "—",
        help=f"Never used for fitting, early stopping or the threshold{share}.",
    )
    st.caption(
        f"MLflow run `{info.run_id or '—'}` · source `{info.source}` · loaded {timestamp(info.loaded_at)} · "
        f"{len(info.feature_columns)} model features · codebook: {info.codebook_version}"
    )


def loading(info: ModelInfo) -> None:
    """Which MLflow flavour is registered, and the lines that load it outside this dashboard."""
    if info.loading is None:
        return
    with st.expander(f"Use this model elsewhere: an MLflow `{info.loading.flavor}` model, `{info.loading.uri}`"):
        st.markdown("In Python, on a pandas frame of accident records (the API's record fields):")
        st.code(info.loading.python, language="python")
        st.markdown("On a Spark DataFrame of accident records:")
        st.code(info.loading.spark, language="python")
        st.markdown("Over HTTP with MLflow's scoring server (`/invocations`):")
        st.code(info.loading.serve, language="bash")


def test_metrics(info: ModelInfo) -> None:
    """Test-year metrics beside the promotion gate and the seed project's published numbers."""
    test = {k: float(v) for k, v in info.metrics.get("test", {}).items() if isinstance(v, int | float)}
    known_years = bool(info.training.test_years)
    test_years = years(info.training.test_years)
    st.subheader(f"Test-year performance ({test_years})" if known_years else "Test-year performance", anchor=False)
    column = f"Test {test_years}" if known_years else "Test year"
    if not test:
        st.info("The training run recorded no test-year metrics for this model.", icon=":material/info:")
        return
    gate = gate_minimums(info)
    seed_project = info.seed_project
    shown = [m for m in ("roc_auc", "f1", "recall", "precision", "accuracy") if m in test]
    cols = st.columns(len(shown), border=True)
    for col, metric in zip(cols, shown, strict=True):
        value = test[metric]
        if metric in seed_project:
            delta = f"{signed_points(value - seed_project[metric])} vs seed"
        elif metric in gate:
            delta = f"{value - gate[metric]:+.3f} vs gate"
        else:
            delta = None
        shown_value = decimal(value) if metric == "roc_auc" else percent(value)
        col.metric(METRIC_NAMES[metric], shown_value, delta, help=METRIC_HELP.get(metric))

    left, right = st.columns([1, 1], gap="large")
    with left:
        fig = metric_comparison(test, seed_project, gate, f"This model ({column.lower()})")
        st.plotly_chart(fig, config=CHART_CONFIG, key="overview_comparison")
    with right:
        rows = []
        for name in ("roc_auc", "pr_auc", "f1", "recall", "precision", "accuracy", "brier"):
            if name not in test:
                continue
            minimum = gate.get(name)
            seed = seed_project.get(name)
            rows.append(
                {
                    "Metric": METRIC_NAMES[name],
                    column: decimal(test[name]),
                    "Gate minimum": decimal(minimum, 2) if minimum is not None else "",
                    "Gate": ("✓ passes" if test[name] >= minimum else "✗ below") if minimum is not None else "",
                    "Seed project": decimal(seed) if seed is not None else "",
                }
            )
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        if info.gate is not None and info.gate.passed is not None:
            if info.gate.passed:
                st.success("This version passed the promotion gate when it was registered.", icon=":material/verified:")
            else:
                reasons = "; ".join(info.gate.reasons) or "no reason recorded"
                st.warning(f"This version did not pass the promotion gate: {reasons}.", icon=":material/warning:")
    trained_on = years(info.training.train_years) if info.training.train_years else "earlier years"
    tested_on = test_years if known_years else "a later year"
    published = ", ".join(f"{'F1' if k == 'f1' else k} {v:.3f}" for k, v in seed_project.items())
    st.caption(
        f"The seed project published {published}, measured on a random split of 2021 "
        f"whose features leaked the label. This model is trained on {trained_on} and tested on {tested_on}, "
        "which it never saw: its numbers are not like for like with the seed's, they are the honest ones."
    )


status = layout.require_ready(layout.api_status())
info = layout.model_info(status)

st.title("Road accident severity", anchor=False)
st.markdown(
    "Predicts whether a road accident in France is **severe**, meaning at least one person was "
    "killed or hospitalised, from the official BAAC accident files (ONISR). "
    "Use **Model evaluation** to choose a threshold, **What-if** to explore one accident, "
    "and **Batch scoring** to score a file."
)
st.success(
    f"The prediction API at `{client.api_url()}` is ready: it serves **{info.name}** "
    f"version {info.version} (@{info.alias}), loaded {timestamp(status.loaded_at)}.",
    icon=":material/check_circle:",
)
with st.container(border=False):
    model_card(info)
    loading(info)
st.divider()
test_metrics(info)
