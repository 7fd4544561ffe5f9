"""Prediction figures: one probability against the threshold, its factors, scenarios, a batch histogram."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.style import NEUTRAL, NOT_SEVERE, SEVERE, styled


def probability_gauge(probability: float, threshold: float) -> go.Figure:
    """A 0-100 % gauge with the decision threshold marked."""
    color = SEVERE if probability >= threshold else NOT_SEVERE
    fig = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=round(probability * 100, 1),
            number={"suffix": " %", "valueformat": ".1f", "font": {"size": 44, "color": color}},
            gauge={
                "axis": {"range": [0, 100], "ticksuffix": "%", "tickwidth": 1},
                "bar": {"color": color, "thickness": 0.35},
                "steps": [
                    {"range": [0, threshold * 100], "color": "#eaf2f8"},
                    {"range": [threshold * 100, 100], "color": "#fadbd8"},
                ],
                "threshold": {"line": {"color": "#2c3e50", "width": 4}, "thickness": 0.9, "value": threshold * 100},
            },
            domain={"x": [0, 1], "y": [0, 1]},
        )
    )
    fig = styled(fig, 240)
    fig.update_layout(margin={"l": 40, "r": 45, "t": 20, "b": 0})
    return fig


def factor_bars(
    labels: Sequence[str], values: Sequence[str], contributions: Sequence[float], hover: Sequence[str]
) -> go.Figure:
    """Signed contributions (log-odds), each feature with its value under it: red raises the risk."""
    order = np.argsort(np.abs(np.asarray(contributions, dtype=float)), kind="stable")
    ys = [f"{labels[i]}<br><span style='color:{NEUTRAL}'>{values[i]}</span>" for i in order]
    xs = [float(contributions[i]) for i in order]
    fig = go.Figure(
        go.Bar(
            x=xs,
            y=ys,
            orientation="h",
            marker={"color": [SEVERE if x >= 0 else NOT_SEVERE for x in xs]},
            text=[f"{x:+.2f}" for x in xs],
            textposition="outside",
            customdata=[hover[i] for i in order],
            hovertemplate="%{customdata}<br>%{x:+.3f} log-odds<extra></extra>",
        )
    )
    span = max([abs(x) for x in xs] + [0.1]) * 1.25
    fig.add_vline(x=0, line={"color": "#2c3e50", "width": 1})
    fig.update_xaxes(title="← lowers the risk · raises the risk → (log-odds)", range=[-span, span], gridcolor="#eee")
    fig.update_yaxes(automargin=True)
    return styled(fig, max(260, 46 * len(ys) + 70))


def probability_histogram(proba: Sequence[float] | pd.Series, threshold: float) -> go.Figure:
    """Stacked histogram of probabilities in 5-point bins, coloured by the predicted label."""
    values = np.asarray(proba, dtype=float)
    bins = {"start": 0.0, "end": 1.0, "size": 0.05}
    fig = go.Figure(
        [
            go.Histogram(
                x=values[values < threshold],
                xbins=bins,
                name="Predicted not severe",
                marker={"color": NOT_SEVERE},
                hovertemplate="%{x}: %{y:,} accidents<extra></extra>",
            ),
            go.Histogram(
                x=values[values >= threshold],
                xbins=bins,
                name="Predicted severe",
                marker={"color": SEVERE},
                hovertemplate="%{x}: %{y:,} accidents<extra></extra>",
            ),
        ]
    )
    fig.add_vline(x=threshold, line={"color": "#2c3e50", "dash": "dash"})
    fig.update_layout(barmode="stack", bargap=0.05)
    fig.update_xaxes(title="Probability of a severe outcome", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title="Accidents", separatethousands=True, gridcolor="#eee")
    return styled(fig, 380, legend_below=True)


def scenario_bars(names: Sequence[str], probabilities: Sequence[float], threshold: float) -> go.Figure:
    """Probabilities of the compared scenarios side by side, with the threshold line."""
    fig = go.Figure(
        go.Bar(
            x=list(names),
            y=list(probabilities),
            marker={"color": [SEVERE if p >= threshold else NOT_SEVERE for p in probabilities]},
            text=[f"{p:.1%}" for p in probabilities],
            textposition="outside",
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    fig.add_hline(y=threshold, line={"color": "#2c3e50", "dash": "dash"})
    fig.update_yaxes(
        title="Probability of a severe outcome",
        tickformat=".0%",
        range=[0, 1.1],
        gridcolor="#eee",
        tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1, threshold],
        ticktext=["0%", "20%", "40%", "60%", "80%", "100%", f"<b>{threshold:.0%}</b>"],
    )
    return styled(fig, 340)
