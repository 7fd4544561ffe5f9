"""Places by name: INSEE codes and coordinates for the record's ``dep``, ``com``, ``lat`` and ``long``."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ServingDep
from api.evaluation import Evaluation
from api.places import MAX_LIMIT, MAX_QUERY, PlaceIndex, place_index
from api.responses import PlacesResponse
from api.schemas import NO_MODEL

router = APIRouter(tags=["model"])

_lock = threading.Lock()
_cached: tuple[Evaluation | None, PlaceIndex] | None = None


def index_for(evaluation: Evaluation | None) -> PlaceIndex:
    """The place index of the served model's evaluation, built once per loaded model."""
    global _cached
    with _lock:
        if _cached is None or _cached[0] is not evaluation:
            _cached = (evaluation, place_index(evaluation.places if evaluation else []))
        return _cached[1]


@router.get("/places", response_model=PlacesResponse, summary="Find a commune by name or code", responses=NO_MODEL)
def places(
    serving: ServingDep,
    q: Annotated[str, Query(max_length=MAX_QUERY, description="Start of a name (accents optional) or code.")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most places returned.")] = 20,
) -> PlacesResponse:
    """Communes and the arrondissements of Paris, Lyon and Marseille (as BAAC codes them), from the
    official list (Etalab, ``decoupage-administratif`` 6.0.0), with the number of training accidents
    of the served model there and their median coordinates. Names starting with ``q`` come first,
    then names containing it; within each, most training accidents first."""
    total, found = index_for(serving.evaluation).search(q, limit)
    return PlacesResponse(query=q, total=total, places=found)
