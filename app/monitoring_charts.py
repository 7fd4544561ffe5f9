"""Plotly figures of the Monitoring page (no Streamlit calls here): the runs over time, drift across runs.

Statuses come from the API (``ok``, ``watch``, ``alert``): the heatmap colours a cell by the
status the API gave, and writes the PSI in it, so the thresholds live with the API's settings only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from api.job_schemas import JobDetail

FONT = "Source Sans Pro, sans-serif"
# One colour per drift status (and verdict); "insufficient" is grey: too few rows to judge.
STATUS_COLOURS: dict[str, str] = {"ok": "#27ae60", "watch": "#f39c12", "alert": "#c0392b", "insufficient": "#95a5a6"}
STATUS_RANK: dict[str, int] = {"ok": 0, "watch": 1, "alert": 2}
# Timeline series: (key, legend name, colour).
SCORE_SERIES: tuple[tuple[str, str, str], ...] = (
    ("predicted_severe_share", "Share predicted severe", "#c0392b"),
    ("mean_probability", "Mean probability", "#2e86c1"),
)
REALIZED_SERIES: tuple[tuple[str, str, str], ...] = (
    ("f1", "F1", "#8e44ad"),
    ("recall", "Recall", "#16a085"),
    ("roc_auc", "ROC-AUC", "#d35400"),
)


def _style(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": FONT, "size": 13},
        plot_bgcolor="white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "xanchor": "right", "x": 1},
        hoverlabel={"font": {"family": FONT}},
    )
    return fig


def timeline(
    runs: Sequence[str],
    hover: Sequence[str],
    scores: Mapping[str, Sequence[float | None]],
    realized: Mapping[str, Sequence[float | None]],
    reference: Mapping[str, float],
) -> go.Figure:
    """Runs oldest to newest: score shares on top, realized metrics below with the test-year values dashed.

    ``runs`` label the x axis (one category per run, so runs minutes apart stay readable); ``scores``
    and ``realized`` map a key of ``SCORE_SERIES``/``REALIZED_SERIES`` to one value per run (None
    where unknown); ``reference`` maps a realized key to the served model's test-year value.
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=("Scores", "Realized, where the outcomes were known (dashed: test year)"),
    )
    for key, name, colour in SCORE_SERIES:
        fig.add_trace(
            go.Scatter(
                x=list(runs),
                y=list(scores.get(key, [])),
                name=name,
                mode="lines+markers",
                line={"color": colour},
                customdata=list(hover),
                hovertemplate=f"%{{customdata}}<br>{name}: %{{y:.1%}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for key, name, colour in REALIZED_SERIES:
        fig.add_trace(
            go.Scatter(
                x=list(runs),
                y=list(realized.get(key, [])),
                name=name,
                mode="markers",
                marker={"color": colour, "size": 10},
                customdata=list(hover),
                hovertemplate=f"%{{customdata}}<br>{name}: %{{y:.3f}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
        if key in reference:
            fig.add_hline(
                y=reference[key],
                line={"color": colour, "dash": "dash", "width": 1},
                annotation={"text": f"{name} test year {reference[key]:.3f}", "font": {"size": 11, "color": colour}},
                annotation_position="top left",
                row=2,
                col=1,
            )
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", gridcolor="#eee", row=1, col=1)
    fig.update_yaxes(range=[0, 1], gridcolor="#eee", row=2, col=1)
    fig.update_xaxes(type="category", showgrid=False)
    return _style(fig, 480)


def drift_heatmap(fields: Sequence[str], runs: Sequence[str], psi: np.ndarray, status: np.ndarray) -> go.Figure:
    """Fields (rows) x runs (columns): each cell coloured by its drift status, its PSI written in it.

    ``psi`` and ``status`` are ``len(fields) x len(runs)``; a field a run did not report is NaN / "".
    """
    rank = np.array([[STATUS_RANK.get(s, np.nan) for s in row] for row in status], dtype=float)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in psi]
    hover = [
        [f"{field} · {run}<br>PSI {text[i][j] or '—'} · {status[i][j] or 'not reported'}" for j, run in enumerate(runs)]
        for i, field in enumerate(fields)
    ]
    scale = [
        [0.0, STATUS_COLOURS["ok"]],
        [0.333, STATUS_COLOURS["ok"]],
        [0.334, STATUS_COLOURS["watch"]],
        [0.666, STATUS_COLOURS["watch"]],
        [0.667, STATUS_COLOURS["alert"]],
        [1.0, STATUS_COLOURS["alert"]],
    ]
    fig = go.Figure(
        go.Heatmap(
            z=rank,
            x=list(runs),
            y=list(fields),
            zmin=-0.5,
            zmax=2.5,
            colorscale=scale,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 11, "color": "white"},
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            xgap=2,
            ygap=2,
            colorbar={"tickvals": [0, 1, 2], "ticktext": ["ok", "watch", "alert"], "title": {"text": "Status"}},
        )
    )
    fig.update_xaxes(type="category", side="top")
    fig.update_yaxes(autorange="reversed", type="category")
    return _style(fig, max(300, 24 * len(fields) + 120))


def score_histogram(edges: Sequence[float], counts: Sequence[int]) -> go.Figure:
    """The run's probabilities in the API's bins, as shares of the scored rows."""
    total = sum(counts) or 1
    bins = list(pairwise(edges))
    centres = [(lo + hi) / 2 for lo, hi in bins]
    widths = [hi - lo for lo, hi in bins]
    labels = [f"{lo:.0%}–{hi:.0%}" for lo, hi in bins]
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=[c / total for c in counts],
            width=widths,
            marker={"color": "#2e86c1", "line": {"color": "white", "width": 1}},
            customdata=[[label, f"{c:,}"] for label, c in zip(labels, counts, strict=True)],
            hovertemplate="P(severe) %{customdata[0]}<br>%{customdata[1]} accidents (%{y:.1%})<extra></extra>",
        )
    )
    fig.update_xaxes(title="Probability of a severe accident", tickformat=".0%", range=[edges[0], edges[-1]])
    fig.update_yaxes(title="Share of the scored accidents", tickformat=".0%", gridcolor="#eee")
    return _style(fig, 300)


def heatmap_frames(
    details: Sequence[JobDetail], labels: Mapping[str, str], most: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ``most`` drifted fields' labels (largest PSI in any run first), and PSI and status matrices
    fields x runs (oldest run first)."""
    ordered = list(reversed(details))
    worst: dict[str, float] = {}
    for job in ordered:
        for row in job.drift:
            worst[row.field] = max(worst.get(row.field, 0.0), row.psi)
    fields = sorted(worst, key=lambda f: -worst[f])[:most]
    psi = np.full((len(fields), len(ordered)), np.nan)
    status = np.full((len(fields), len(ordered)), "", dtype=object)
    index = {f: i for i, f in enumerate(fields)}
    for j, job in enumerate(ordered):
        for row in job.drift:
            if row.field not in index:
                continue
            psi[index[row.field], j] = row.psi
            status[index[row.field], j] = row.status
    return [f"{labels.get(f, f)} ({f})" for f in fields], psi, status
