"""``python -m api``: serve the API on API_HOST:API_PORT (127.0.0.1:8000 by default).

The production front of one uvicorn worker: ``API_LIMIT_CONCURRENCY`` connections and tasks
at most (beyond, an immediate 503 rather than a hang), idle keep-alive connections closed
after ``API_TIMEOUT_KEEP_ALIVE`` seconds, and request heads capped at 16 KiB. uvicorn has no
timeout for a client that sends its request head slowly: behind the internet, put a reverse
proxy with header and body timeouts in front (README, "Serving in production").
"""

from __future__ import annotations

import uvicorn

from api.settings import Settings

MAX_HEAD_BYTES = 16 * 1024


def main() -> None:
    """Run one uvicorn worker: it holds the model and starts the file-scoring job workers."""
    settings = Settings()
    uvicorn.run(
        "api.main:app",
        host=settings.host,
        port=settings.port,
        workers=1,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.timeout_keep_alive,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()
