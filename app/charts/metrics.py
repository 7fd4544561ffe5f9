"""Evaluation figures: confusion matrix, ROC and PR curves, threshold trade-offs, importances, calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.style import ACCENT, GATE, NEUTRAL, NOT_SEVERE, SEVERE, styled


def confusion_heatmap(tn: int, fp: int, fn: int, tp: int, title: str | None = None) -> go.Figure:
    """2x2 heatmap: counts and the share of each actual class (row rates)."""
    grid = np.array([[tn, fp], [fn, tp]], dtype=float)
    totals = grid.sum(axis=1, keepdims=True)
    shares = np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)
    text = [[f"<b>{int(grid[i, j]):,}</b><br>{shares[i, j]:.1%} of row" for j in range(2)] for i in range(2)]
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=["Predicted not severe", "Predicted severe"],
            y=["Actually not severe", "Actually severe"],
            text=text,
            texttemplate="%{text}",
            textfont={"size": 16},
            colorscale=[[0, "#f4f6f7"], [1, "#1b4f72"]],
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="%{y}, %{x}<br>%{text}<extra></extra>",
            xgap=3,
            ygap=3,
        )
    )
    fig.update_yaxes(autorange="reversed")
    return styled(fig, 340, title)


def _threshold_marker(x: float, y: float, threshold: float) -> go.Scatter:
    return go.Scatter(
        x=[x],
        y=[y],
        mode="markers",
        name=f"Threshold {threshold:.2f}",
        marker={"size": 13, "color": ACCENT, "line": {"color": "white", "width": 2}, "symbol": "circle"},
        hovertemplate=f"threshold {threshold:.2f}<br>%{{x:.1%}}, %{{y:.1%}}<extra></extra>",
    )


def roc_curve(
    fpr: Sequence[float], tpr: Sequence[float], point: tuple[float, float], threshold: float, auc: float | None
) -> go.Figure:
    """ROC curve with the chance diagonal and the current threshold marked."""
    label = f"ROC (AUC {auc:.3f})" if auc is not None else "ROC"
    fig = go.Figure(
        [
            go.Scatter(
                x=[0, 1], y=[0, 1], mode="lines", name="Chance", line={"color": NEUTRAL, "dash": "dash", "width": 1}
            ),
            go.Scatter(
                x=list(fpr),
                y=list(tpr),
                mode="lines",
                name=label,
                line={"color": NOT_SEVERE, "width": 3},
                hovertemplate="false alarms %{x:.1%}<br>severe found %{y:.1%}<extra></extra>",
            ),
            _threshold_marker(point[0], point[1], threshold),
        ]
    )
    fig.update_xaxes(title="False positive rate (non-severe flagged)", tickformat=".0%", range=[0, 1], gridcolor="#eee")
    fig.update_yaxes(title="Recall (severe accidents found)", tickformat=".0%", range=[0, 1.02], gridcolor="#eee")
    return styled(fig, 420, label)


def pr_curve(
    recall: Sequence[float],
    precision: Sequence[float],
    point: tuple[float, float],
    threshold: float,
    prevalence: float,
    average_precision: float | None,
) -> go.Figure:
    """Precision-recall curve, with the share of severe accidents as the baseline."""
    label = f"Precision-recall (AP {average_precision:.3f})" if average_precision is not None else "Precision-recall"
    fig = go.Figure(
        [
            go.Scatter(
                x=[0, 1],
                y=[prevalence, prevalence],
                mode="lines",
                name=f"Share severe ({prevalence:.1%})",
                line={"color": NEUTRAL, "dash": "dash", "width": 1},
            ),
            go.Scatter(
                x=list(recall),
                y=list(precision),
                mode="lines",
                name="Precision-recall",
                line={"color": SEVERE, "width": 3},
                hovertemplate="recall %{x:.1%}<br>precision %{y:.1%}<extra></extra>",
            ),
            _threshold_marker(point[0], point[1], threshold),
        ]
    )
    fig.update_xaxes(title="Recall (severe accidents found)", tickformat=".0%", range=[0, 1], gridcolor="#eee")
    fig.update_yaxes(title="Precision (flagged that are severe)", tickformat=".0%", range=[0, 1.02], gridcolor="#eee")
    return styled(fig, 420, label)


def threshold_curves(table: pd.DataFrame, current: float, model_threshold: float) -> go.Figure:
    """Precision, recall and F1 against the threshold, with the current and the model's threshold."""
    fig = go.Figure()
    lines = (("precision", "Precision", NOT_SEVERE), ("recall", "Recall", SEVERE), ("f1", "F1", GATE))
    for column, name, color in lines:
        fig.add_trace(
            go.Scatter(
                x=table["threshold"],
                y=table[column],
                mode="lines",
                name=name,
                line={"color": color, "width": 2.5},
                hovertemplate=f"{name} %{{y:.1%}} at %{{x:.2f}}<extra></extra>",
            )
        )
    fig.add_vline(x=model_threshold, line={"color": NEUTRAL, "dash": "dot"})
    fig.add_vline(x=current, line={"color": ACCENT, "width": 3})
    fig.add_annotation(
        x=current, y=1.04, yref="paper", text=f"{current:.2f}", showarrow=False, font={"color": ACCENT, "size": 13}
    )
    fig.update_xaxes(title="Decision threshold", range=[0, 1], gridcolor="#eee")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], gridcolor="#eee")
    return styled(fig, 420, "Precision, recall and F1 by threshold")


def importance_bars(labels: Sequence[str], shares: Sequence[float], hover: Sequence[str]) -> go.Figure:
    """Horizontal bars of the share of total gain, largest on top."""
    fig = go.Figure(
        go.Bar(
            x=list(shares)[::-1],
            y=list(labels)[::-1],
            orientation="h",
            marker={"color": NOT_SEVERE},
            text=[f"{s:.1%}" for s in list(shares)[::-1]],
            textposition="outside",
            customdata=list(hover)[::-1],
            hovertemplate="%{y}<br>%{customdata}<br>%{x:.1%} of total gain<extra></extra>",
        )
    )
    fig.update_xaxes(
        title="Share of the model's total gain",
        tickformat=".0%",
        range=[0, max([*shares, 0.01]) * 1.15],
        gridcolor="#eee",
    )
    fig.update_yaxes(automargin=True)
    return styled(fig, max(320, 26 * len(labels) + 80))


def metric_comparison(
    model: Mapping[str, float], seed: Mapping[str, float], gate: Mapping[str, float], model_name: str
) -> go.Figure:
    """Grouped bars: this model against the seed project, with the gate minimums marked."""
    names = [m for m in ("accuracy", "precision", "recall", "f1") if m in model]
    pretty = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1"}
    xs = [pretty[m] for m in names]
    fig = go.Figure(
        [
            go.Bar(
                x=xs,
                y=[model[m] for m in names],
                name=model_name,
                marker={"color": NOT_SEVERE},
                text=[f"{model[m]:.1%}" for m in names],
                textposition="inside",
                insidetextanchor="start",
                textangle=0,
                textfont={"color": "white"},
            ),
            go.Bar(
                x=xs,
                y=[seed.get(m, 0.0) for m in names],
                name="Seed project (leaky random split)",
                marker={"color": "#bdc3c7"},
                text=[f"{seed[m]:.1%}" if m in seed else "" for m in names],
                textposition="inside",
                insidetextanchor="start",
                textangle=0,
            ),
        ]
    )
    gated = [(pretty[m], gate[m]) for m in names if m in gate]
    if gated:
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in gated],
                y=[y for _, y in gated],
                mode="markers",
                name="Promotion gate (minimum)",
                marker={"symbol": "line-ew", "size": 46, "line": {"color": GATE, "width": 4}},
                hovertemplate="gate minimum %{y:.1%}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], gridcolor="#eee")
    return styled(fig, 360)


def reliability_diagram(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float | None]]) -> go.Figure:
    """Observed severe rate against mean predicted probability per decile, one line per split.

    ``curves`` maps a split's name to (predicted, observed, ECE).
    """
    colours = [NOT_SEVERE, SEVERE, ACCENT]
    traces: list[go.Scatter] = [
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="Perfectly calibrated",
            line={"color": NEUTRAL, "dash": "dash", "width": 1},
        )
    ]
    for (name, (predicted, observed, ece)), colour in zip(curves.items(), colours, strict=False):
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        traces.append(
            go.Scatter(
                x=list(predicted),
                y=list(observed),
                mode="lines+markers",
                name=label,
                line={"color": colour, "width": 2},
                hovertemplate="predicted %{x:.1%}<br>observed %{y:.1%}<extra>" + name + "</extra>",
            )
        )
    fig = go.Figure(traces)
    fig.update_xaxes(title="Mean predicted probability (decile)", tickformat=".0%", range=[0, 1], gridcolor="#eee")
    fig.update_yaxes(title="Observed severe rate", tickformat=".0%", range=[0, 1], gridcolor="#eee")
    return styled(fig, 420, "Reliability diagram", legend_below=True)
