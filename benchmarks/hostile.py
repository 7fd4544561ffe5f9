"""The API under hostile JSON: peak RSS per request, and /predict latency while attacks run.

A real uvicorn (1 worker, ``benchmarks.api``'s server and temporary registry) is sampled by
psutil every 10 ms. Two measures:

* peak RSS of the server process during each request of ``CASES``: the largest accepted
  JSON batch (``API_MAX_BATCH`` real records) and the worst bodies just under the JSON cap
  (``API_MAX_JSON_MB``), each refused before validation;
* /predict and /health latency (p50, p99) at ``rate`` req/s while one client sends the
  hostile bodies back to back (goal: /predict p99 <= 100 ms, issue 12).

Run: ``python -m benchmarks.hostile`` (or through ``python -m benchmarks``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from api.settings import Settings
from benchmarks.api import build_registry, request_bodies, uvicorn_server
from benchmarks.probes import peak_rss, server_pid, user_latency

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "hostile.json"
P99_GOAL_MS = 100.0


def cases(records: list[bytes]) -> dict[str, bytes]:
    """Request bodies by name: the largest accepted batch, then hostile ones near the cap."""
    defaults = Settings(_env_file=None)
    cap, batch = defaults.max_json_bytes - 64, defaults.max_batch
    full = b'{"records": [' + b",".join((records * (batch // len(records) + 1))[:batch]) + b"]}"
    return {
        f"accepted batch ({batch} records, {len(full) / 1e6:.2f} MB)": full,
        "70k empty records": b'{"records": [' + b",".join([b"{}"] * 70_000) + b"]}",
        "ints up to the cap": b'{"records": [' + b",".join([b"1"] * (cap // 2)) + b"]}",
        "string up to the cap": b'{"dep": "' + b"x" * cap + b'"}',
        "extra keys up to the cap": json.dumps({f"k{i}": 0 for i in range(cap // 12)}).encode()[:cap] + b"}",
        "1000 records x 30 errors": json.dumps(
            {"records": [{"lum": 9, "heure": "x", "extra": "y" * 100} for _ in range(batch)]}
        ).encode(),
        "nesting 1M deep": b"[" * (cap // 4),
        "NaN and surrogates": b'{"records": [{"lat": NaN, "dep": "\\ud800"}]}',
    }


def measure_rss(base: str, pid: int, bodies: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Peak RSS, status, response size and time of each body, one at a time."""
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for name, body in bodies.items():
            before = psutil.Process(pid).memory_info().rss / 1e6
            with peak_rss(pid) as peak:
                start = time.perf_counter()
                response = client.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
                seconds = time.perf_counter() - start
                time.sleep(0.05)
                top = peak()
            out[name] = {
                "status": response.status_code,
                "body_mb": round(len(body) / 1e6, 2),
                "response_kb": round(len(response.content) / 1e3, 1),
                "seconds": round(seconds, 3),
                "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(top, 1),
            }
            log.info("%s: %s", name, out[name])
    return out


def _attack(base: str, hostile: list[bytes], stop: Any, count: Any) -> None:
    """Send the hostile bodies back to back until ``stop`` is set (a process of its own, so
    the attacker's CPU is not charged to the user's latencies)."""
    with httpx.Client(base_url=base, timeout=120) as client:
        while not stop.is_set():
            for body in hostile:
                client.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
                with count.get_lock():
                    count.value += 1


def latency_under_attack(
    base: str, records: list[bytes], hostile: list[bytes], seconds: float, rate: float
) -> dict[str, Any]:
    """User latencies while another process sends the hostile bodies."""
    stop, count = multiprocessing.Event(), multiprocessing.Value("i", 0)
    attacker = multiprocessing.Process(target=_attack, args=(base, hostile, stop, count), daemon=True)
    attacker.start()
    try:
        time.sleep(1.0)
        result = asyncio.run(user_latency(base, records, seconds, rate))
    finally:
        stop.set()
        attacker.join(timeout=60)
        if attacker.is_alive():
            attacker.terminate()
    return {**result, "attacks": count.value}


def run(seconds: float = 20.0, rate: float = 50.0) -> dict[str, Any]:
    """Start a registry and a server, measure, print and return the numbers."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        work = Path(tmp)
        tracking_uri, test = build_registry(work)
        records = request_bodies(test)
        bodies = cases(records)
        with uvicorn_server(tracking_uri, work / "uvicorn.log") as port:
            base = f"http://127.0.0.1:{port}"
            pid = server_pid()
            rss = measure_rss(base, pid, bodies)
            hostile = [body for name, body in bodies.items() if not name.startswith("accepted")]
            baseline = asyncio.run(user_latency(base, records, seconds, rate))
            under_attack = latency_under_attack(base, records, hostile, seconds, rate)
    results = {
        "rss": rss,
        "baseline": baseline,
        "under_attack": under_attack,
        "settings": f"{rate:.0f} req/s (/predict + 1 /health in 5) for {seconds:.0f} s, hostile bodies back to back",
        "goal_p99_ok": under_attack["predict"]["p99_ms"] <= P99_GOAL_MS,
    }
    print(f"\n{'request':<34}{'status':>7}{'body MB':>9}{'resp kB':>9}{'s':>8}{'peak RSS MB':>13}")
    for name, r in rss.items():
        print(
            f"{name[:34]:<34}{r['status']:>7}{r['body_mb']:>9}{r['response_kb']:>9}{r['seconds']:>8}{r['peak_rss_mb']:>13}"
        )
    print(f"\nunder attack ({results['settings']}, {under_attack['attacks']} hostile requests):")
    for name in ("predict", "health"):
        s, b = under_attack[name], baseline[name]
        print(
            f"  /{name:<8} p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  ({s['requests']} requests); "
            f"without attack p50 {b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms"
        )
    print(f"goal /predict p99 <= {P99_GOAL_MS:.0f} ms: {'ok' if results['goal_p99_ok'] else 'MISSED'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    run()
