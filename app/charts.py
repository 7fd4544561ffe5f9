"""Plotly figures of the dashboard (no Streamlit calls here).

Every figure shares one look: white background, the same two colours for "severe" and
"not severe", percentages for probabilities and rates, thousands separators for counts.
The map is a ``Scattergeo`` on plotly's own Natural Earth outlines (served by the dashboard
itself, see ``TOPOJSON_URL``): no tile server, so it works offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

SEVERE = "#c0392b"
NOT_SEVERE = "#2e86c1"
NEUTRAL = "#7f8c8d"
ACCENT = "#f39c12"
GATE = "#27ae60"
FONT = "Source Sans Pro, sans-serif"
# Probability scale: calm blue for low risk to deep red for high risk.
RISK_SCALE: list[list[float | str]] = [
    [0.0, "#2e86c1"],
    [0.35, "#a9cce3"],
    [0.5, "#f7dc6f"],
    [0.7, "#e67e22"],
    [1.0, "#922b21"],
]
# Plotly fetches map outlines (topojson) from a CDN unless told otherwise: the dashboard
# serves plotly's own files from app/static (Streamlit static serving).
TOPOJSON_URL = "/app/static/"


def map_config(base_url_path: str = "") -> dict[str, object]:
    """Plotly config of the map; ``base_url_path`` is Streamlit's ``server.baseUrlPath``, if any."""
    prefix = f"/{base_url_path.strip('/')}" if base_url_path.strip("/") else ""
    return {"topojsonURL": prefix + TOPOJSON_URL, "displaylogo": False, "scrollZoom": False}


CHART_CONFIG: dict[str, object] = {"displaylogo": False}
# Metropolitan France, with a margin; overseas departments are out of this frame.
METROPOLE_LAT = (41.2, 51.3)
METROPOLE_LON = (-5.3, 9.8)
MAX_MAP_POINTS = 5000


def _style(fig: go.Figure, height: int, title: str | None = None, legend_below: bool = False) -> go.Figure:
    # A titled chart keeps its top for the title: its legend goes under the x axis.
    below = legend_below or title is not None
    legend = (
        {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}
        if below
        else {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1}
    )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 45 if title else 20, "b": 10},
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 16}} if title else None,
        font={"family": FONT, "size": 13},
        plot_bgcolor="white",
        legend=legend,
        hoverlabel={"font": {"family": FONT}},
    )
    return fig


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
    return _style(fig, 340, title)


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
    return _style(fig, 420, label)


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
    return _style(fig, 420, label)


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
    return _style(fig, 420, "Precision, recall and F1 by threshold")


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
    return _style(fig, max(320, 26 * len(labels) + 80))


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
    fig = _style(fig, 240)
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
    return _style(fig, max(260, 46 * len(ys) + 70))


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
    return _style(fig, 380, legend_below=True)


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
    return _style(fig, 340)


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
    return _style(fig, 360)


@dataclass(frozen=True)
class MapPoints:
    """The accidents to draw on the map of metropolitan France, and what was left out."""

    points: pd.DataFrame
    total: int
    outside: int  # overseas departments, or coordinates outside the metropolitan frame
    missing: int  # not geolocated
    sampled: bool


def map_points(frame: pd.DataFrame, max_points: int = MAX_MAP_POINTS, seed: int = 0) -> MapPoints:
    """Keep geolocated accidents inside metropolitan France; sample when there are too many."""
    lat = pd.to_numeric(frame["lat"], errors="coerce")
    lon = pd.to_numeric(frame["long"], errors="coerce")
    known = lat.notna() & lon.notna()
    inside = known & lat.between(*METROPOLE_LAT) & lon.between(*METROPOLE_LON)
    points = frame.loc[inside]
    sampled = len(points) > max_points
    if sampled:
        points = points.sample(n=max_points, random_state=seed)
    return MapPoints(
        points=points,
        total=len(frame),
        outside=int((known & ~inside).sum()),
        missing=int((~known).sum()),
        sampled=sampled,
    )


def accident_map(points: pd.DataFrame, threshold: float) -> go.Figure:
    """Accidents of metropolitan France on a conic projection, coloured by probability.

    ``points`` needs ``lat``, ``long``, ``proba`` and a ``hover`` text column.
    """
    ordered = points.sort_values("proba")  # high risk drawn last, on top
    size = 7 if len(ordered) <= 500 else 5 if len(ordered) <= 2000 else 4  # thousands of dots must not merge
    fig = go.Figure(
        go.Scattergeo(
            lat=ordered["lat"],
            lon=ordered["long"],
            mode="markers",
            text=ordered["hover"],
            hovertemplate="%{text}<extra></extra>",
            marker={
                "size": size,
                "opacity": 0.85 if size > 4 else 0.7,
                "color": ordered["proba"],
                "cmin": 0,
                "cmax": 1,
                "colorscale": RISK_SCALE,
                "line": {"color": "white", "width": 0.4},
                "colorbar": {
                    "title": {"text": "P(severe)", "side": "top"},
                    "orientation": "h",
                    "x": 0.5,
                    "y": -0.02,
                    "yanchor": "top",
                    "len": 0.7,
                    "thickness": 10,
                    "tickvals": [0, threshold, 1],
                    "ticktext": ["0%", f"threshold {threshold:.0%}", "100%"],
                },
            },
        )
    )
    fig.update_geos(
        scope="europe",
        resolution=50,
        projection={"type": "conic conformal", "parallels": [44, 49], "rotation": {"lon": 3}},
        lataxis={"range": list(METROPOLE_LAT)},
        lonaxis={"range": list(METROPOLE_LON)},
        showland=True,
        landcolor="#f4f1ea",
        showcountries=True,
        countrycolor="#b3b3b3",
        showcoastlines=True,
        coastlinecolor="#8c8c8c",
        showocean=True,
        oceancolor="#e6f0f7",
        showlakes=False,
        showframe=False,
        bgcolor="rgba(0,0,0,0)",
    )
    return _style(fig, 600)


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
    return _style(fig, 420, "Reliability diagram", legend_below=True)
