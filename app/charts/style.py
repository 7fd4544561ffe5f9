"""The one look of every figure: colours, font, layout, Plotly config."""

from __future__ import annotations

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
CHART_CONFIG: dict[str, object] = {"displaylogo": False}


def styled(fig: go.Figure, height: int, title: str | None = None, legend_below: bool = False) -> go.Figure:
    """``fig`` in the shared look, ``height`` pixels high, with an optional title."""
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
