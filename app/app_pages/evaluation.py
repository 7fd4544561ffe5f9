"""Model evaluation: the test-year confusion matrix at any threshold, ROC and PR curves, importance."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from api.schemas import EvaluationResponse
from app import charts, layout
from app.formatting import count, percent, signed_points
from pipeline.metrics import rates

TOP_FEATURES = 15


def at_threshold(table: pd.DataFrame, threshold: float) -> dict[str, int]:
    """Confusion counts of the table row nearest to ``threshold`` (the table steps by 0.01)."""
    row = table.iloc[int((table["threshold"] - threshold).abs().argmin())]
    return {k: int(row[k]) for k in ("tn", "fp", "fn", "tp")}


def metric_row(cm: dict[str, int], base: dict[str, int]) -> None:
    """Precision, recall, F1, accuracy and the share flagged, with the change from the model's threshold."""
    now, ref = rates(cm), rates(base)
    moved = cm != base
    n = sum(cm.values())
    flagged = (cm["tp"] + cm["fp"]) / n if n else 0.0
    flagged_ref = (base["tp"] + base["fp"]) / n if n else 0.0
    cols = st.columns(5, border=True)
    for col, key, label, help_text in (
        (cols[0], "precision", "Precision", "Of the accidents flagged severe, the share that were."),
        (cols[1], "recall", "Recall", "Of the severe accidents, the share flagged."),
        (cols[2], "f1", "F1", "Balance of precision and recall."),
        (cols[3], "accuracy", "Accuracy", "Share of accidents classified correctly."),
    ):
        delta = f"{signed_points(now[key] - ref[key])} vs model" if moved else None
        col.metric(label, percent(now[key]), delta, help=help_text)
    cols[4].metric(
        "Flagged severe",
        percent(flagged),
        f"{signed_points(flagged - flagged_ref)} vs model" if moved else None,
        delta_color="off",
        help=f"{count(cm['tp'] + cm['fp'])} of {count(n)} test accidents would be flagged.",
    )


def curves(ev: EvaluationResponse, cm: dict[str, int], threshold: float) -> None:
    """ROC and PR curves with the current threshold marked."""
    r = rates(cm)
    negatives = cm["tn"] + cm["fp"]
    fpr = cm["fp"] / negatives if negatives else 0.0
    n = sum(cm.values())
    prevalence = (cm["tp"] + cm["fn"]) / n if n else 0.0
    auc = ev.metrics.get("roc_auc")
    ap = ev.metrics.get("pr_auc")
    left, right = st.columns(2, gap="large")
    with left:
        fig = charts.roc_curve(
            [p.fpr for p in ev.roc],
            [p.tpr for p in ev.roc],
            (fpr, r["recall"]),
            threshold,
            float(auc) if isinstance(auc, int | float) else None,
        )
        st.plotly_chart(fig, config=charts.CHART_CONFIG, key="eval_roc")
    with right:
        fig = charts.pr_curve(
            [p.recall for p in ev.pr],
            [p.precision for p in ev.pr],
            (r["recall"], r["precision"]),
            threshold,
            prevalence,
            float(ap) if isinstance(ap, int | float) else None,
        )
        st.plotly_chart(fig, config=charts.CHART_CONFIG, key="eval_pr")


def importance(ev: EvaluationResponse) -> None:
    """Top features by total gain."""
    top = ev.feature_importance[:TOP_FEATURES]
    st.subheader("What the model relies on", anchor=False)
    fig = charts.importance_bars(
        [f.label_en for f in top],
        [f.share for f in top],
        [f"{f.label_fr} · {f.feature}" for f in top],
    )
    st.plotly_chart(fig, config=charts.CHART_CONFIG, key="eval_importance")
    st.caption(
        f"The {len(top)} most used of {len(ev.feature_importance)} features, by their share of the total "
        "gain of the trees: how much each one helped separate severe from non-severe accidents. "
        "It says nothing about the direction of the effect; the What-if page shows that for one accident."
    )


status = layout.require_ready(layout.api_status())
ev = layout.evaluation(status)
table = pd.DataFrame([row.model_dump() for row in ev.thresholds])
years = ", ".join(str(y) for y in ev.test_years) if ev.test_years else "the test year"

st.title("Model evaluation", anchor=False)
st.markdown(
    f"How the model did on **{years}**, a year it never saw in training "
    f"({count(int(ev.metrics.get('n') or 0))} accidents). Move the threshold to trade missed severe "
    "accidents against false alarms."
)

model_threshold = round(ev.threshold, 2)
threshold = float(
    st.slider(
        "Decision threshold: accidents with at least this probability are flagged severe",
        min_value=0.0,
        max_value=1.0,
        value=model_threshold,
        step=0.01,
        format="%.2f",
        key="eval_threshold",
        help=f"The model's own threshold is {ev.threshold:.3f} (chosen on the validation split for the best F1).",
    )
)
cm = at_threshold(table, threshold)
base = at_threshold(table, model_threshold)
metric_row(cm, base)

left, right = st.columns(2, gap="large")
with left:
    fig = charts.confusion_heatmap(**cm, title=f"Confusion matrix at threshold {threshold:.2f}")
    st.plotly_chart(fig, config=charts.CHART_CONFIG, key="eval_confusion")
    st.caption(
        f"Missed severe accidents: **{count(cm['fn'])}** · false alarms: **{count(cm['fp'])}**. "
        "Rates are shares of each actual class (rows)."
    )
with right:
    st.plotly_chart(
        charts.threshold_curves(table, threshold, ev.threshold), config=charts.CHART_CONFIG, key="eval_thresholds"
    )
    st.caption("Dotted line: the model's threshold; orange: the one chosen above.")

curves(ev, cm, threshold)
st.divider()
importance(ev)
