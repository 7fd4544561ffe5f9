"""Model evaluation: the test-year confusion matrix at any threshold, ROC and PR curves, calibration,
where the model is weakest (slices) and feature importance. Every number comes from the API."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from api.responses import EvaluationResponse, SliceReport
from app import layout
from app.charts.metrics import (
    confusion_heatmap,
    importance_bars,
    pr_curve,
    reliability_diagram,
    roc_curve,
    threshold_curves,
)
from app.charts.style import CHART_CONFIG
from app.formatting import count, decimal, percent, signed_points

TOP_FEATURES = 15
COUNTS = ("tn", "fp", "fn", "tp")
RATES = ("accuracy", "precision", "recall", "f1")


def at_threshold(table: pd.DataFrame, threshold: float) -> tuple[dict[str, int], dict[str, float]]:
    """Confusion counts and rates of the API's table row nearest to ``threshold`` (it steps by 0.01)."""
    row = table.iloc[int((table["threshold"] - threshold).abs().argmin())]
    return {k: int(row[k]) for k in COUNTS}, {k: float(row[k]) for k in RATES}


def metric_row(cm: dict[str, int], now: dict[str, float], base: dict[str, int], ref: dict[str, float]) -> None:
    """Precision, recall, F1, accuracy and the share flagged, with the change from the model's threshold."""
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


def curves(ev: EvaluationResponse, cm: dict[str, int], r: dict[str, float], threshold: float) -> None:
    """ROC and PR curves with the current threshold marked."""
    negatives = cm["tn"] + cm["fp"]
    fpr = cm["fp"] / negatives if negatives else 0.0
    n = sum(cm.values())
    prevalence = (cm["tp"] + cm["fn"]) / n if n else 0.0
    auc = ev.metrics.get("roc_auc")
    ap = ev.metrics.get("pr_auc")
    left, right = st.columns(2, gap="large")
    with left:
        fig = roc_curve(
            [p.fpr for p in ev.roc],
            [p.tpr for p in ev.roc],
            (fpr, r["recall"]),
            threshold,
            float(auc) if isinstance(auc, int | float) else None,
        )
        st.plotly_chart(fig, config=CHART_CONFIG, key="eval_roc")
    with right:
        fig = pr_curve(
            [p.recall for p in ev.pr],
            [p.precision for p in ev.pr],
            (r["recall"], r["precision"]),
            threshold,
            prevalence,
            float(ap) if isinstance(ap, int | float) else None,
        )
        st.plotly_chart(fig, config=CHART_CONFIG, key="eval_pr")


def calibration(ev: EvaluationResponse) -> None:
    """Reliability diagram and expected calibration error of the validation and test splits."""
    st.subheader("Can the probabilities be read as they are?", anchor=False)
    if not ev.calibration:
        st.info("This model's run logged no calibration report.", icon=":material/info:")
        return
    names = {"valid": "Validation (training years)", "test": f"Test ({years})"}
    left, right = st.columns([3, 2], gap="large")
    with left:
        fig = reliability_diagram(
            {
                names[c.split]: ([b.predicted for b in c.bins], [b.observed for b in c.bins], c.ece)
                for c in ev.calibration
            }
        )
        st.plotly_chart(fig, config=CHART_CONFIG, key="eval_reliability")
    with right:
        cols = st.columns(len(ev.calibration), border=True)
        for col, curve in zip(cols, ev.calibration, strict=True):
            col.metric(
                f"ECE, {names[curve.split].split(' (')[0].lower()}",
                f"{curve.ece * 100:.1f} pts" if curve.ece is not None else "—",
                help="Expected calibration error: the accident-weighted mean gap between the predicted "
                "probability and the observed severe rate, over ten deciles of predictions.",
            )
        test = next((c for c in ev.calibration if c.split == "test"), None)
        if test is not None and test.ece is not None:
            verdict = "close to" if test.ece <= 0.02 else "noticeably off"
            st.markdown(
                f"On {years}, predicted probabilities are {verdict} the observed severe rates: on average "
                f"they are off by **{test.ece * 100:.1f} percentage points**. A point on the diagonal means "
                "that among accidents given about that probability, that share was indeed severe."
            )
        st.caption(
            "Each point is a tenth of the accidents, grouped by predicted probability. The validation split "
            "is scored by the early-stopping model, which never saw it."
        )


def slice_title(group: str, name: str) -> str:
    """``"Road category: Motorway"``; departments need no group: ``"Department 75"``."""
    return name if name.startswith(group.split(" ")[0]) else f"{group}: {name}"


def slice_table(report: SliceReport) -> pd.DataFrame:
    """The slices as a readable table, flagged ones first within their group order."""
    rows = [
        {
            "Flag": "⚠ weak recall" if s.flagged else "",
            "Slice": slice_title(s.group, s.name),
            "Accidents": s.n,
            "Severe rate": percent(s.severe_rate),
            "ROC-AUC": decimal(s.roc_auc),
            "Recall": percent(s.recall),
            "Precision": percent(s.precision),
        }
        for s in report.slices
    ]
    return pd.DataFrame(rows)


def slices(ev: EvaluationResponse) -> None:
    """Metrics per slice, and where the model is weakest, in words."""
    st.subheader("Where the model is weakest", anchor=False)
    report = ev.slices
    if report is None:
        st.info("This model's run logged no per-slice metrics.", icon=":material/info:")
        return
    overall_recall = report.overall_recall
    flagged = sorted((s for s in report.slices if s.flagged), key=lambda s: s.recall or 0.0)
    if flagged:
        worst = ", ".join(f"**{slice_title(s.group, s.name)}** (recall {percent(s.recall)})" for s in flagged[:5])
        st.warning(
            f"The model finds far fewer of the severe accidents in {len(flagged)} "
            f"slice{'s' if len(flagged) > 1 else ''} than overall (recall {percent(overall_recall)} at the "
            f"threshold). Weakest: {worst}. Treat its predictions there with more caution.",
            icon=":material/warning:",
        )
    else:
        st.success(
            f"No slice of at least {count(report.min_count)} accidents has a recall more than "
            f"{report.recall_gap * 100:.0f} points below overall ({percent(overall_recall)}).",
            icon=":material/check_circle:",
        )
    table = slice_table(report)
    # Tall enough for every row: the flags must not hide below a scroll bar.
    st.dataframe(table, hide_index=True, height=35 * (len(table) + 1) + 3)
    st.caption(
        f"Test year, at the model's threshold ({report.threshold:.3f}). Flagged: recall more than "
        f"{report.recall_gap * 100:.0f} points below overall, on at least {count(report.min_count)} accidents. "
        "A low recall often comes with a low severe rate (in Paris, few accidents are severe), "
        "so the same threshold flags few of them."
    )


def importance(ev: EvaluationResponse) -> None:
    """Top features by total gain."""
    top = ev.feature_importance[:TOP_FEATURES]
    st.subheader("What the model relies on", anchor=False)
    fig = importance_bars(
        [f.label_en for f in top],
        [f.share for f in top],
        [f"{f.label_fr} · {f.feature}" for f in top],
    )
    st.plotly_chart(fig, config=CHART_CONFIG, key="eval_importance")
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
cm, now = at_threshold(table, threshold)
base, ref = at_threshold(table, model_threshold)
metric_row(cm, now, base, ref)

left, right = st.columns(2, gap="large")
with left:
    fig = confusion_heatmap(**cm, title=f"Confusion matrix at threshold {threshold:.2f}")
    st.plotly_chart(fig, config=CHART_CONFIG, key="eval_confusion")
    st.caption(
        f"Missed severe accidents: **{count(cm['fn'])}** · false alarms: **{count(cm['fp'])}**. "
        "Rates are shares of each actual class (rows)."
    )
with right:
    st.plotly_chart(threshold_curves(table, threshold, ev.threshold), config=CHART_CONFIG, key="eval_thresholds")
    st.caption("Dotted line: the model's threshold; orange: the one chosen above.")

curves(ev, cm, now, threshold)
st.divider()
calibration(ev)
st.divider()
slices(ev)
st.divider()
importance(ev)
