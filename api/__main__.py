"""``python -m api``: serve the API on API_HOST:API_PORT (127.0.0.1:8000 by default)."""

from __future__ import annotations

import uvicorn

from api.settings import Settings


def main() -> None:
    """Run one uvicorn worker: the model and the scoring jobs live in this process."""
    settings = Settings()
    uvicorn.run("api.main:app", host=settings.host, port=settings.port, workers=1)


if __name__ == "__main__":
    main()
