"""Our ``/predict`` against ``mlflow models serve``, side by side, on the same registered version.

One temporary SQLite registry holds the champion (``benchmarks.api.build_registry``: the
repo's trained model, else one trained on the bundled data). Both servers run at once on
127.0.0.1, one worker each: the API (``uvicorn api.main:app``) and MLflow's scoring server
(``mlflow models serve -m models:/accident-severity@champion --env-manager local``). One client
sends single accident records sequentially over a keep-alive connection to each, in
alternating blocks so that both see the same machine load: ``POST /predict`` with the record,
``POST /invocations`` with ``{"dataframe_records": [record]}``. Both must return the same
probability (to 1e-7); the numbers are p50 and p90 of the round trip, and the ratio of the p50s.

Wall-clock latency follows the machine's load; two load-robust measures come with it: the CPU
time each server process (and its children) spends per request, for ``/predict`` and for
``GET /health`` (the HTTP and framework floor), and the CPU time of the parts of one prediction
in this process (record validation, model row, the booster call).

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil

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


def listener(port: int) -> psutil.Process:
    """The process listening on ``port`` on 127.0.0.1."""
    for connection in psutil.net_connections("tcp"):
        listening = connection.status == psutil.CONN_LISTEN and connection.pid is not None
        if listening and connection.laddr and connection.laddr.port == port:
            return psutil.Process(connection.pid)
    raise RuntimeError(f"no process listens on port {port}")


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of a process and its children (uvicorn workers)."""
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class Client:
    """One keep-alive connection posting JSON bodies to one path, timing each round trip and
    the server's CPU time."""

    def __init__(self, port: int, path: str, connection: http.client.HTTPConnection | None = None) -> None:
        # A shared connection stays busy: an idle one is closed by the server's keep-alive timeout.
        self.connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path = path
        self.server = listener(port)
        self.latencies: list[float] = []
        self.cpu = 0.0

    def post(self, body: bytes | None) -> Any:
        """POST ``body`` (GET without one); the parsed JSON answer."""
        method = "GET" if body is None else "POST"
        start = time.perf_counter()
        self.connection.request(method, self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        self.latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"{self.path} answered {response.status}: {data[:300]!r}")
        return json.loads(data)

    def reconnect(self, body: bytes) -> None:
        """A fresh connection and one untimed request: the other server's block may have
        outlasted this server's keep-alive timeout."""
        self.connection.close()
        self.post(body)
        self.latencies.pop()

    @contextmanager
    def metered(self) -> Iterator[None]:
        """Add the server's CPU time over the block to ``cpu`` (its own work only: one process)."""
        before = cpu_seconds(self.server)
        try:
            yield
        finally:
            self.cpu += cpu_seconds(self.server) - before

    def stats(self) -> dict[str, float]:
        ms = np.asarray(self.latencies) * 1000
        return {
            "requests": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "server_cpu_ms_per_request": round(self.cpu * 1000 / len(ms), 3),
        }


def compare(api_port: int, mlflow_port: int, bodies: list[bytes], requests: int, rounds: int = 20) -> dict[str, Any]:
    """Alternate rounds of sequential single-record requests; check both give the same probabilities.

    Each round sends a block to one server, then the same records to the other: requests
    alternated one by one would let each server's work evict the other's caches between two
    requests (MLflow's pandas path touches tens of MB), which a server alone never sees.
    """
    ours, theirs = Client(api_port, "/predict"), Client(mlflow_port, "/invocations")
    health = Client(api_port, "/health", ours.connection)  # the HTTP + framework floor of our server
    mlflow_bodies = [b'{"dataframe_records": [' + body + b"]}" for body in bodies]
    for i in range(20):  # warm-up, untimed
        ours.post(bodies[i % len(bodies)])
        theirs.post(mlflow_bodies[i % len(bodies)])
        health.post(None)
    for client in (ours, theirs, health):
        client.latencies.clear()
    largest_gap = 0.0
    per_round = max(1, requests // rounds)
    for r in range(rounds):
        records = range(r * per_round, (r + 1) * per_round)
        ours.reconnect(bodies[0])
        with ours.metered():
            a = [ours.post(bodies[i % len(bodies)])["probability"] for i in records]
        with health.metered():
            for _ in range(per_round // 5):
                health.post(None)
        theirs.reconnect(mlflow_bodies[0])
        with theirs.metered():
            b = [theirs.post(mlflow_bodies[i % len(bodies)])["predictions"][0]["probability"] for i in records]
        largest_gap = max(largest_gap, float(np.max(np.abs(np.subtract(a, b)))))
    if largest_gap > 1e-7:
        raise AssertionError(f"/predict and /invocations disagree by {largest_gap}")
    api, served = ours.stats(), theirs.stats()
    return {
        "predict": api,
        "mlflow_serve": served,
        "health": health.stats(),
        "ratio_p50": round(served["p50_ms"] / api["p50_ms"], 1),
        "largest_probability_gap": largest_gap,
    }


def cpu_us(call: Callable[[], object], n: int = 2000, repeats: int = 5) -> float:
    """Median over ``repeats`` of the CPU time (this thread, microseconds) of one ``call()``."""
    runs = []
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(n):
            call()
        runs.append((time.thread_time() - start) / n * 1e6)
    return round(float(np.median(runs)), 1)


def components(tracking_uri: str, bodies: list[bytes]) -> dict[str, float]:
    """CPU time of the parts of one /predict in this process (load-robust, unlike wall time)."""
    from api.json_body import parse_strict
    from pipeline.model import load_model
    from pipeline.records import AccidentRecord

    model = load_model(MODEL_URI, tracking_uri)
    body = bodies[0]
    data = parse_strict(body)
    record = AccidentRecord.model_validate(data)
    values = record.model_dump()
    row = model.row(values)
    return {
        "parse_json_us": cpu_us(lambda: parse_strict(body)),
        "validate_record_us": cpu_us(lambda: AccidentRecord.model_validate(data)),
        "model_row_us": cpu_us(lambda: model.row(values)),
        "booster_predict_one_row_us": cpu_us(lambda: model.predict_row(row)),
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
        parts = components(tracking_uri, bodies)
    results: dict[str, Any] = {
        "settings": f"{requests} single records each, sequential, one keep-alive connection, alternating blocks",
        "cpus": os.cpu_count(),
        "loadavg": Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3],
        **numbers,
        "components_cpu_us": parts,
        "goals": {
            "/predict p50 <= 2 ms": numbers["predict"]["p50_ms"] <= GOALS["predict_p50_ms"],
            "/predict >= 5x faster than mlflow models serve": numbers["ratio_p50"] >= GOALS["ratio"],
        },
    }
    print(f"  {'server':<22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'server CPU ms':>15}")
    for name in ("predict", "mlflow_serve", "health"):
        s = results[name]
        cpu = s["server_cpu_ms_per_request"]
        print(f"  {name:<22}{s['p50_ms']:>9.2f}{s['p90_ms']:>9.2f}{s['p99_ms']:>9.2f}{cpu:>15.2f}")
    print("  in-process CPU of one /predict's parts (us): " + ", ".join(f"{k} {v}" for k, v in parts.items()))
    print(f"  load average {' '.join(results['loadavg'])} on {results['cpus']} CPUs")
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
