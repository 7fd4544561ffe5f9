"""The accident map: a ``Scattergeo`` on plotly's own Natural Earth outlines.

The outlines are served by the dashboard itself (see ``TOPOJSON_URL``): no tile server, so it works offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from app.charts.style import RISK_SCALE, styled

# Plotly fetches map outlines (topojson) from a CDN unless told otherwise: the dashboard
# serves plotly's own files from app/static (Streamlit static serving).
TOPOJSON_URL = "/app/static/"


def map_config(base_url_path: str = "") -> dict[str, object]:
    """Plotly config of the map; ``base_url_path`` is Streamlit's ``server.baseUrlPath``, if any."""
    prefix = f"/{base_url_path.strip('/')}" if base_url_path.strip("/") else ""
    return {"topojsonURL": prefix + TOPOJSON_URL, "displaylogo": False, "scrollZoom": False}


# Metropolitan France, with a margin; overseas departments are out of this frame.
METROPOLE_LAT = (41.2, 51.3)
METROPOLE_LON = (-5.3, 9.8)
MAX_MAP_POINTS = 5000


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
    return styled(fig, 600)
