"""Places by name: the official commune list joined with the served model's training accidents.

The list (``data/places/communes.json.gz``, Etalab's ``decoupage-administratif`` 6.0.0, see its
README) gives names, INSEE codes, départements and populations; the model's run gives, for each
commune of its training accidents, how many there were and their median coordinates.
"""

from __future__ import annotations

import gzip
import json
import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from api.responses import Place

log = logging.getLogger(__name__)
COMMUNES_FILE = Path(__file__).resolve().parent.parent / "data" / "places" / "communes.json.gz"
MAX_LIMIT = 100  # most places one search returns (the ``limit`` query parameter's bound)
MAX_QUERY = 100  # longest accepted search text


def fold(text: str) -> str:
    """Lower case without accents, hyphens as spaces: "Saint-Étienne" -> "saint etienne"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace("-", " ").replace("'", " ").split())


@lru_cache(maxsize=1)
def official_list(path: Path = COMMUNES_FILE) -> tuple[dict[str, Any], ...]:
    """The vendored communes and municipal arrondissements (read once); empty, and logged, when the
    deployment did not ship the file: places then have no names, predictions are unaffected."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return tuple(json.load(f))
    except (OSError, ValueError) as exc:
        log.error("no commune list at %s, GET /places will be empty: %s", path, exc)
        return ()


class PlaceIndex:
    """Every place of the official list, with the training accidents of the served model."""

    def __init__(self, communes: Iterable[Mapping[str, Any]], centres: Iterable[Mapping[str, Any]]) -> None:
        by_code = {str(c["com"]): c for c in centres}
        self.places: list[Place] = []
        for c in communes:
            centre = by_code.get(c["code"], {})
            self.places.append(
                Place(
                    code=c["code"],
                    name=c["nom"],
                    dep=c["departement"],
                    type=c["type"],
                    population=c.get("population"),
                    accidents=int(centre.get("accidents") or 0),
                    lat=centre.get("lat"),
                    long=centre.get("long"),
                )
            )
        # Most training accidents first, then the most populous: the likely place comes first.
        self.places.sort(key=lambda p: (-p.accidents, -(p.population or 0), p.code))
        self._folded = [fold(p.name) for p in self.places]
        self._by_code = {p.code: p for p in self.places}

    def get(self, code: str) -> Place | None:
        """The place with this INSEE code."""
        return self._by_code.get(code)

    def search(self, query: str, limit: int) -> tuple[int, list[Place]]:
        """Places whose name starts with the query (then contains it), or whose code starts with it.

        Returns the number of matches and the first ``limit`` of them.
        """
        q = fold(query)
        if not q:
            return len(self.places), self.places[:limit]
        starts: list[Place] = []
        contains: list[Place] = []
        for place, name in zip(self.places, self._folded, strict=True):
            if name.startswith(q) or place.code.startswith(q.upper()):
                starts.append(place)
            elif q in name:
                contains.append(place)
        found: Sequence[Place] = starts + contains
        return len(found), list(found[:limit])


def place_index(centres: Iterable[Mapping[str, Any]]) -> PlaceIndex:
    """The index for a model's commune centres."""
    return PlaceIndex(official_list(), centres)
