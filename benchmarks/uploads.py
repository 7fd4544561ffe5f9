"""File uploads at the limits: peak RSS of the API, and /health and /predict latency meanwhile.

A real uvicorn (``python -m api``'s app, 1 worker, ``benchmarks.api``'s server and temporary
registry) is sampled by psutil every 10 ms, with its child processes (the job workers), while:

* one maximum upload is scored: a flat CSV of real test-year records resampled (with
  replacement, renumbered) up to ``API_MAX_UPLOAD_MB`` or ``API_MAX_UPLOAD_ROWS``, whichever
  comes first (goal: peak RSS <= 1.5 GB, issue 12);
* ``CONCURRENT`` such uploads are sent at once (goal <= 3 GB; past ``API_MAX_CONCURRENT_JOBS``,
  when the server has that setting, the extra ones get 429);
* one gzip bomb is refused: 100 real rows repeated past ``API_MAX_EXPANDED_MB``, a few MB
  gzipped (time to the 413, peak RSS).

During the first ``LATENCY_SECONDS`` of each phase, and once before any upload (the baseline), a
user sends /predict and /health at ``rate`` req/s (p50, p99; goal for /predict p99 <= 100 ms,
issue 12). The machine's load average is recorded with each phase: on a shared machine the
latencies are the machine's as much as the API's.

Run: ``python -m benchmarks.uploads`` (or through ``python -m benchmarks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import logging
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil

from api.settings import Settings
from benchmarks.api import build_registry, request_bodies, uvicorn_server
from benchmarks.probes import load_average, peak_rss, server_pid, tree_rss, user_latency
from pipeline.records import ID_COLUMN

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "uploads.json"
CONCURRENT = 20
RSS_GOAL_MB = {"one": 1500.0, "concurrent": 3000.0}
RSS_ABORT_MB = 10_000.0  # the machine is shared: stop the server rather than let it take everything
LATENCY_SECONDS = (
    20.0  # the user's requests, from the start of each phase (a max upload: receive and most of its scoring)
)
P99_GOAL_MS = 100.0


def max_upload(test: pd.DataFrame, settings: Settings) -> bytes:
    """Real records resampled (renumbered ids) up to the upload size or row cap, as a ';' CSV."""
    sample = test.to_csv(sep=";", index=False).encode()
    per_row = len(sample) / len(test)
    budget = settings.max_upload_bytes - 64 * 1024  # room for the multipart envelope
    rows = min(settings.max_upload_rows, int(budget / per_row))
    while True:
        rng = np.random.default_rng(0)
        frame = test.iloc[rng.integers(0, len(test), rows)].reset_index(drop=True)
        frame[ID_COLUMN] = np.arange(1, rows + 1)
        content = frame.to_csv(sep=";", index=False).encode()
        if len(content) <= budget:
            return content
        rows = int(rows * budget / len(content) * 0.995)


def gzip_bomb(test: pd.DataFrame, settings: Settings) -> bytes:
    """100 real rows repeated past the expanded-size cap, gzipped (deflate sees the repeats)."""
    head, _, rows = test.head(100).to_csv(sep=";", index=False).encode().partition(b"\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6) as gz:
        gz.write(head + b"\n")
        written = 0
        while written <= settings.max_expanded_bytes:
            gz.write(rows)
            written += len(rows)
    return buffer.getvalue()


def post_file(base: str, name: str, content: bytes) -> dict[str, Any]:
    """One upload: status, seconds, and the detail of a refusal."""
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=900) as client:
        response = client.post("/score/file", files={"file": (name, content, "application/octet-stream")})
    out: dict[str, Any] = {"status": response.status_code, "seconds": round(time.perf_counter() - start, 2)}
    if response.status_code != 200:
        out["detail"] = str(response.json().get("detail"))[:300]
    else:
        out["rows"] = response.json()["rows_total"]
    return out


def send_uploads(base: str, name: str, content: bytes, count: int) -> list[dict[str, Any]]:
    """``count`` uploads at once (run in a process of its own: see ``phase``)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: post_file(base, name, content), range(count)))


async def phase(
    base: str, pid: int, records: list[bytes], sender: ProcessPoolExecutor, uploads: tuple[str, bytes, int], rate: float
) -> dict[str, Any]:
    """Send ``uploads`` (name, content, how many at once) while a user measures latency; peak RSS of the
    server throughout.

    The uploads leave from another process: httpx encoding and sending 50 MB in a thread of this
    one held its GIL in turn with the user's requests and added seconds to their latency.
    """
    before = tree_rss(pid) / 1e6
    load_before = load_average()
    with peak_rss(pid) as peak:
        job = asyncio.get_running_loop().run_in_executor(sender, send_uploads, base, *uploads)
        user = asyncio.create_task(user_latency(base, records, LATENCY_SECONDS, rate))
        while not (job.done() and user.done()):
            if peak() > RSS_ABORT_MB:
                psutil.Process(pid).kill()
                raise RuntimeError(f"server RSS over {RSS_ABORT_MB:.0f} MB: killed")
            await asyncio.sleep(0.1)
        sent, latency = job.result(), user.result()
        top = peak()
    return {
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(top, 1),
        "uploads": sent,
        "latency": latency,
        "loadavg": [load_before, load_average()],
    }


def run(rate: float = 20.0, concurrent: int = CONCURRENT) -> dict[str, Any]:
    """Start a registry and a server, measure the three phases, print and return the numbers."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = Settings(_env_file=None)  # the defaults are what is measured
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-uploads-")))
        tracking_uri, test = build_registry(work)
        records = request_bodies(test)
        upload, bomb = max_upload(test, settings), gzip_bomb(test, settings)
        log.info("max upload %.1f MB; gzip bomb %.1f MB", len(upload) / 1e6, len(bomb) / 1e6)
        sender = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        sender.submit(len, b"").result()  # started (and its imports done) before anything is timed
        with uvicorn_server(tracking_uri, work / "uvicorn.log") as port:
            base = f"http://127.0.0.1:{port}"
            pid = server_pid()
            idle_load = load_average()
            idle = asyncio.run(user_latency(base, records, LATENCY_SECONDS, rate))
            idle["loadavg"] = [idle_load, load_average()]

            results: dict[str, Any] = {
                "upload_mb": round(len(upload) / 1e6, 1),
                "upload_rows": upload.count(b"\n") - 1,
                "bomb_mb": round(len(bomb) / 1e6, 2),
                "bomb_expands_to_mb": round(settings.max_expanded_bytes / 1e6),
                "idle_latency": idle,
            }
            phases = {
                "one": ("records.csv", upload, 1),
                "bomb": ("bomb.csv.gz", bomb, 1),
                "concurrent": ("records.csv", upload, concurrent),
            }
            for name, uploads in phases.items():
                results[name] = asyncio.run(phase(base, pid, records, sender, uploads, rate))
                log.info("%s: %s", name, results[name])
    _report(results, concurrent)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _latency_lines(latency: dict[str, Any], loadavg: list[str]) -> None:
    for endpoint in ("predict", "health"):
        s = latency.get(endpoint)
        if s:
            goal = ""
            if endpoint == "predict":
                goal = f" (p99 goal {P99_GOAL_MS:.0f}: {'ok' if s['p99_ms'] <= P99_GOAL_MS else 'MISSED'})"
            print(
                f"    /{endpoint:<8} p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms ({s['requests']} requests, "
                f"{s['failed']} failed){goal}"
            )
    print(f"    load average {loadavg[0]} -> {loadavg[1]}")


def _report(results: dict[str, Any], concurrent: int) -> None:
    print(f"\nmax upload: {results['upload_mb']} MB, {results['upload_rows']:,} real rows (resampled)")
    print("no upload (baseline)")
    _latency_lines(results["idle_latency"], results["idle_latency"]["loadavg"])
    for name, label in (
        ("one", "one max upload"),
        ("bomb", f"gzip bomb ({results['bomb_mb']} MB)"),
        ("concurrent", f"{concurrent} max uploads"),
    ):
        r = results[name]
        statuses: dict[int, int] = {}
        for u in r["uploads"]:
            statuses[u["status"]] = statuses.get(u["status"], 0) + 1
        slowest = max(u["seconds"] for u in r["uploads"])
        goal = RSS_GOAL_MB.get(name)
        verdict = f" (goal {goal:.0f}: {'ok' if r['peak_rss_mb'] <= goal else 'MISSED'})" if goal else ""
        print(
            f"{label:<28} statuses {statuses}  slowest {slowest:.1f} s  peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(idle {r['rss_before_mb']:.0f}){verdict}"
        )
        _latency_lines(r["latency"], r["loadavg"])


if __name__ == "__main__":
    run()
