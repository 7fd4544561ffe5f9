"""Our ``/predict`` against ``mlflow models serve``, side by side, on the same registered version.

One temporary SQLite registry holds the champion (``benchmarks.api.build_registry``: the
repo's trained model, else one trained on the bundled data). Both servers run at once on
127.0.0.1, one worker each: the API (``uvicorn api.main:app``) and MLflow's scoring server
(``mlflow models serve -m models:/accident-severity@champion --env-manager local``). One client
sends single accident records sequentially over a keep-alive connection to each, in
alternating rounds so that both see the same machine load: ``POST /predict`` with the record,
``POST /invocations`` with ``{"dataframe_records": [record]}``. Both must return the same
probability (to 1e-7); the numbers are p50 and p90 of the round trip, and the ratio of the p50s.

Goal: /predict p50 <= 2 ms and >= 5x faster than MLflow serving.

Run: ``python -m benchmarks.serving [--model-dir models --reports-dir reports] [--requests N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.api import build_registry, request_bodies, uvicorn_server
from benchmarks.servers import ROOT, free_port, serve

log = logging.getLogger(__name__)

RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
GOALS = {"predict_p50_ms": 2.0, "ratio": 5.0}
MODEL_URI = "models:/accident-severity@champion"


@contextmanager
def mlflow_server(tracking_uri: str, logs: Path) -> Iterator[int]:
    """``mlflow models serve`` of the champion (1 worker, this environment) on a free port."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "OMP_WAIT_POLICY": "PASSIVE",
        # The scoring server execs ``uvicorn`` from PATH: this environment's.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", MODEL_URI, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with serve(command, env, port, "/ping", logs) as ready:
        yield ready


class Client:
    """One keep-alive connection posting JSON bodies to one path, timing each round trip."""

    def __init__(self, port: int, path: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path = path
        self.latencies: list[float] = []

    def post(self, body: bytes) -> Any:
        start = time.perf_counter()
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        self.latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"{self.path} answered {response.status}: {data[:300]!r}")
        return json.loads(data)

    def stats(self) -> dict[str, float]:
        ms = np.asarray(self.latencies) * 1000
        return {
            "requests": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
        }


def compare(api_port: int, mlflow_port: int, bodies: list[bytes], requests: int, rounds: int = 20) -> dict[str, Any]:
    """Alternate rounds of sequential single-record requests; check both give the same probabilities."""
    ours, theirs = Client(api_port, "/predict"), Client(mlflow_port, "/invocations")
    mlflow_bodies = [b'{"dataframe_records": [' + body + b"]}" for body in bodies]
    for i in range(20):  # warm-up, untimed
        ours.post(bodies[i % len(bodies)])
        theirs.post(mlflow_bodies[i % len(bodies)])
    ours.latencies.clear()
    theirs.latencies.clear()
    largest_gap = 0.0
    per_round = max(1, requests // rounds)
    for r in range(rounds):
        for i in range(r * per_round, (r + 1) * per_round):
            a = ours.post(bodies[i % len(bodies)])["probability"]
            b = theirs.post(mlflow_bodies[i % len(bodies)])["predictions"][0]["probability"]
            largest_gap = max(largest_gap, abs(a - b))
    if largest_gap > 1e-7:
        raise AssertionError(f"/predict and /invocations disagree by {largest_gap}")
    api, served = ours.stats(), theirs.stats()
    return {
        "predict": api,
        "mlflow_serve": served,
        "ratio_p50": round(served["p50_ms"] / api["p50_ms"], 1),
        "largest_probability_gap": largest_gap,
    }


def run(requests: int = 2000, trained: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Register, start both servers, compare; print and return the numbers."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        tracking_uri, test = build_registry(work, trained)
        bodies = request_bodies(test)
        with (
            uvicorn_server(tracking_uri, work / "uvicorn.log") as api_port,
            mlflow_server(tracking_uri, work / "mlflow.log") as mlflow_port,
        ):
            log.info("%d sequential single-record requests to each server", requests)
            numbers = compare(api_port, mlflow_port, bodies, requests)
    results: dict[str, Any] = {
        "settings": f"{requests} single records each, sequential, one keep-alive connection, alternating rounds",
        "cpus": os.cpu_count(),
        **numbers,
        "goals": {
            "/predict p50 <= 2 ms": numbers["predict"]["p50_ms"] <= GOALS["predict_p50_ms"],
            "/predict >= 5x faster than mlflow models serve": numbers["ratio_p50"] >= GOALS["ratio"],
        },
    }
    print(f"  {'server':<22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for name in ("predict", "mlflow_serve"):
        s = results[name]
        print(f"  {name:<22}{s['p50_ms']:>9.2f}{s['p90_ms']:>9.2f}{s['p99_ms']:>9.2f}")
    gap = numbers["largest_probability_gap"]
    print(f"  /predict is {results['ratio_p50']}x faster (p50); same probabilities (largest gap {gap})")
    print("goals: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in results["goals"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main() -> None:
    """Command line: optionally register a given trained model folder."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a trained model folder (default: the repo's models/)")
    parser.add_argument("--reports-dir", type=Path, help="its evaluate reports (with --model-dir)")
    parser.add_argument("--requests", type=int, default=2000, help="requests to each server (default: 2000)")
    args = parser.parse_args()
    trained = (args.model_dir, args.reports_dir) if args.model_dir and args.reports_dir else None
    run(args.requests, trained)


if __name__ == "__main__":
    main()
