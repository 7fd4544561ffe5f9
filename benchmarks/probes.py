"""What the benchmarks watch on a running server: its peak RSS, and a user's latency meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import psutil


def server_pid() -> int:
    """The pid of the API server this process started (``python -m api`` or uvicorn)."""
    for child in psutil.Process().children(recursive=True):
        cmd = child.cmdline()
        if any("uvicorn" in part for part in cmd) or cmd[1:3] == ["-m", "api"]:
            return int(child.pid)
    raise RuntimeError("no API server among this process's children")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and of all its descendants now (the API's fork server and job
    workers, the batch job's MLflow process), 0 once it has exited."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # ended between listing and reading
            total += process.memory_info().rss
    return total


@contextmanager
def peak_rss(pid: int) -> Iterator[Callable[[], float]]:
    """Sample the RSS of ``pid`` with its child processes every 10 ms; yields a getter of the peak (MB)."""
    peak = [tree_rss(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pid))
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: peak[0] / 1e6
    finally:
        stop.set()
        thread.join()


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages (``/proc/loadavg``), to read latencies by."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


async def user_latency(base: str, records: list[bytes], seconds: float, rate: float) -> dict[str, Any]:
    """/predict (``records`` in turn) and /health (1 in 5) at ``rate`` req/s for ``seconds``, open loop: p50, p99,
    and how many failed (a reset connection or an answer other than 200)."""
    latencies: dict[str, list[float]] = {"predict": [], "health": []}
    failures = {"predict": 0, "health": 0}  # connection errors and non-200 answers

    async def one(client: httpx.AsyncClient, i: int, due: float) -> None:
        name = "health" if i % 5 == 4 else "predict"
        try:
            if name == "health":
                response = await client.get("/health")
            else:
                body = records[i % len(records)]
                response = await client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        except httpx.TransportError:
            failures[name] += 1
            return
        if response.status_code != 200:
            failures[name] += 1
        latencies[name].append(time.perf_counter() - due)  # charged from when it was due

    async def user() -> None:
        # Open loop: each request leaves when due, whether the previous ones answered or not.
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            start = time.perf_counter()
            tasks = []
            i = 0
            while (due := start + i / rate) < start + seconds:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(client, i, due)))
                i += 1
            await asyncio.gather(*tasks)

    await user()

    def stats(name: str) -> dict[str, float]:
        ms = np.array(latencies[name] or [float("nan")]) * 1000
        return {
            "requests": len(latencies[name]) + failures[name],
            "failed": failures[name],
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
        }

    return {"predict": stats("predict"), "health": stats("health")}
