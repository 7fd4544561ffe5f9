"""The whole workflow in containers, end to end: `make containers` (`python -m tests.containers.e2e`).

With Docker + Docker Compose where they exist, else podman + podman-compose (set up on these
machines by ../shared/tools/container-engine.sh). It builds every image target, brings up
mlflow, api and app with compose, runs the pipeline service twice (`dvc repro`: the first
trains and registers a champion in the mlflow container, the second is a no-op), sees the API
follow the champion alias by itself, score a record and a real CSV (a file job, in a worker
forked from the API container's fork server), opens the dashboard in Chromium, runs the
`score` image on a mounted folder of raw BAAC tables, checks that every container runs as a
non-root user and is healthy, and checks the image sizes against their budgets.
Whatever happens, the stack goes down with its volumes and the images it built are removed
(KEEP_IMAGES=1 keeps them, for a faster second run).

Not a pytest module: it takes minutes and needs a container engine, so `make test` never runs it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tests.conftest import UPLOAD

log = logging.getLogger("containers")

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "accident-severity-e2e"  # its own compose project: network and volumes apart from a user's stack
TARGETS = ("mlflow", "pipeline", "api", "app", "score")
SERVICES = ("mlflow", "api", "app")
PORTS = {"mlflow": 5000, "api": 8000, "app": 8501}
MODEL_NAME, MODEL_ALIAS = "accident-severity", "champion"
# Sizes as the engine reports them (decimal units, as `podman images` prints them).
SIZE_BUDGETS = {"app": 0.85e9, "api": 0.95e9}
RAW_TABLES = ROOT / "data" / "bundled" / "baac" / "2021"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
PODMAN_COMPOSE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "container-tools/bin/podman-compose"


class Failure(Exception):
    """A check of the container workflow failed."""


@dataclass
class Engine:
    """The container engine and its compose front end."""

    name: str
    compose_cmd: list[str]
    build_args: list[str] = field(default_factory=list)

    def compose(self, *args: str) -> list[str]:
        return [*self.compose_cmd, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yaml"), *args]


def find_engine() -> Engine:
    """Docker with Compose v2 when its daemon answers, else podman (CONTAINER_ENGINE forces one)."""
    wanted = os.environ.get("CONTAINER_ENGINE")
    if wanted in (None, "docker") and shutil.which("docker"):
        ok = subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
        if ok and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
            return Engine("docker", ["docker", "compose"])
    if wanted in (None, "podman") and shutil.which("podman"):
        compose = shutil.which("podman-compose") or (str(PODMAN_COMPOSE) if PODMAN_COMPOSE.exists() else None)
        if compose is None:
            raise Failure("podman found but no podman-compose (bash ../shared/tools/container-engine.sh installs it)")
        # Builds reach PyPI through the host's network on these machines.
        return Engine("podman", [compose], ["--network", "host", "--format", "docker"])
    raise Failure("no container engine: install Docker + Docker Compose, or podman + podman-compose")


def run(
    cmd: Sequence[str], timeout: float = 600, check: bool = True, quiet: bool = False, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it and its duration (unless ``quiet``); its output is captured and returned."""
    level = logging.DEBUG if quiet else logging.INFO
    log.log(level, "$ %s", " ".join(cmd))
    started = time.monotonic()
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    log.log(level, "  -> exit %d in %.1f s", result.returncode, time.monotonic() - started)
    if check and result.returncode != 0:
        raise Failure(f"{cmd[:4]} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def poll(what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError, Failure) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(every)
    raise Failure(f"{what}: not within {timeout:.0f} s (last: {last})")


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    """GET (or POST ``body``) and decode the JSON answer; HTTP errors raise."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------


def build(engine: Engine, timings: dict[str, float], targets: Sequence[str]) -> None:
    revision = run(["git", "rev-parse", "HEAD"], check=False, cwd=ROOT).stdout.strip() or "unknown"
    for target in targets:
        started = time.monotonic()
        run(
            [engine.name, "build", *engine.build_args, "--target", target, "-t", f"accident-severity-{target}",
             "--build-arg", f"REVISION={revision}", str(ROOT)],
            timeout=1800,
        )  # fmt: skip
        timings[f"build {target}"] = time.monotonic() - started


def image_sizes(engine: Engine) -> dict[str, int]:
    sizes = {}
    for target in TARGETS:
        out = run([engine.name, "image", "inspect", "--format", "{{.Size}}", f"accident-severity-{target}"]).stdout
        sizes[target] = int(out.split()[0])
    return sizes


def check_images(engine: Engine, sizes: dict[str, int]) -> None:
    for target, budget in SIZE_BUDGETS.items():
        if sizes[target] > budget:
            raise Failure(f"image {target} is {sizes[target] / 1e9:.2f} GB, over its {budget / 1e9:.2f} GB budget")
    for target in TARGETS:
        user = run([engine.name, "image", "inspect", "--format", "{{.Config.User}}", f"accident-severity-{target}"])
        if user.stdout.strip().split(":")[0] in ("", "0", "root"):
            raise Failure(f"image {target} runs as root ({user.stdout.strip()!r})")
        labels = run(
            [engine.name, "image", "inspect", "--format", "{{json .Config.Labels}}", f"accident-severity-{target}"]
        )
        revision = (json.loads(labels.stdout) or {}).get("org.opencontainers.image.revision")
        if not revision:
            raise Failure(f"image {target} has no org.opencontainers.image.revision label")


def container_id(engine: Engine, service: str) -> str:
    out = run(
        [engine.name, "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
         "--filter", f"label=com.docker.compose.service={service}"],
        quiet=True,
    ).stdout.split()  # fmt: skip
    if not out:
        raise Failure(f"no running container for service {service}")
    return out[0]


def healthy(engine: Engine, service: str) -> bool:
    """The engine's own health check: run it (podman, no timer here) or read its status (docker)."""
    cid = container_id(engine, service)
    if engine.name == "podman":
        return run(["podman", "healthcheck", "run", cid], check=False, quiet=True).returncode == 0
    status = run(["docker", "inspect", "--format", "{{.State.Health.Status}}", cid], quiet=True).stdout.strip()
    return status == "healthy"


def champion() -> dict[str, Any]:
    url = f"http://127.0.0.1:{PORTS['mlflow']}/api/2.0/mlflow/registered-models/alias?name={MODEL_NAME}&alias={MODEL_ALIAS}"
    version: dict[str, Any] = http_json(url)["model_version"]
    return version


def model_versions() -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{PORTS['mlflow']}/api/2.0/mlflow/model-versions/search?filter=name%3D%27{MODEL_NAME}%27"
    versions: list[dict[str, Any]] = http_json(url).get("model_versions", [])
    return versions


def run_pipeline(engine: Engine) -> str:
    result = run(engine.compose("--profile", "pipeline", "run", "--rm", "pipeline"), timeout=1800)
    output = result.stdout + result.stderr
    log.info("pipeline output (tail):\n%s", output[-1500:])
    return output


def a_record() -> dict[str, Any]:
    """One real accident of the 2021 extract, as a client sends it."""
    from pipeline.raw_tables import find_tables, read_year
    from pipeline.record_tables import records_from_tables
    from pipeline.records import RECORD_COLUMNS

    frame = records_from_tables(read_year(find_tables([ROOT / "tests" / "data" / "baac" / "2021"])))
    rows: list[dict[str, Any]] = json.loads(frame[list(RECORD_COLUMNS)].head(1).to_json(orient="records"))
    return rows[0]


def check_file_job() -> None:
    """Score the real 150-record upload through ``POST /score/file``: the job runs in a worker
    forked from the API container's fork server, and its run is listed by the API."""
    import httpx  # dev tool of the host running this check, not of the images

    api = f"http://127.0.0.1:{PORTS['api']}"
    upload = {"file": (UPLOAD.name, UPLOAD.read_bytes(), "text/csv")}
    response = httpx.post(f"{api}/score/file", files=upload, timeout=120)
    if response.status_code != 200:
        raise Failure(f"POST /score/file answered {response.status_code}: {response.text[:300]}")
    job = http_json(f"{api}/score/jobs/{response.json()['job_id']}")
    if job["input_rows"] != 150 or job["scored"] + job["rejected"] != 150:
        raise Failure(f"the file job counted {job['input_rows']} rows, {job['scored']} scored: expected 150")
    log.info("file job: %d rows scored, verdict %s", job["scored"], job["verdict"])


def check_dashboard(version: str) -> None:
    """The Overview page, rendered by Chromium, names the served model version."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    shot = ROOT / "tests" / "artifacts" / "containers-overview.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{PORTS['app']}/", timeout=60_000)
            pattern = re.compile(rf"version\s+{re.escape(version)}\b")
            try:
                page.get_by_text(pattern).first.wait_for(timeout=90_000)
            except PlaywrightError as exc:  # TimeoutError included: say what the page showed instead
                page.screenshot(path=str(shot), full_page=True)
                text = page.inner_text("body")[:1500]
                raise Failure(f"the Overview page does not show version {version} ({shot}):\n{text}") from exc
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()


def check_score_image(engine: Engine, work: Path) -> None:
    """The batch image on a mounted folder of raw tables writes into a mounted output folder."""
    inputs, outputs = work / "in", work / "out"
    shutil.copytree(RAW_TABLES, inputs)
    outputs.mkdir()
    user: list[str] = []
    if os.getuid() == 0:
        outputs.chmod(0o777)  # the image's own non-root user writes; root reads anything
    else:
        user = ["--user", f"{os.getuid()}:{os.getgid()}"]  # the outputs are the host user's
    run(
        [engine.name, "run", "--rm", "--network", f"{PROJECT}_default", *user,
         "-e", "MLFLOW_TRACKING_URI=http://mlflow:5000",
         "-v", f"{inputs}:/in:ro", "-v", f"{outputs}:/out", "accident-severity-score",
         "/in", "--output", "/out/scores.parquet"],
        timeout=600,
    )  # fmt: skip
    files = sorted(p.name for p in outputs.iterdir())
    log.info("score outputs: %s", files)
    wanted = {"parquet": "scores.parquet", "rejects": "rejects", "summary": "summary"}
    for what, part in wanted.items():
        if not any(part in name for name in files):
            raise Failure(f"the score image wrote no {what} file into the mounted folder: {files}")
    for path in outputs.iterdir():
        if not os.access(path, os.R_OK):
            raise Failure(f"{path.name} is not readable by the host user")
    import pyarrow.parquet as pq

    rows = pq.read_metadata(outputs / "scores.parquet").num_rows
    if rows <= 0:
        raise Failure("scores.parquet has no rows")
    log.info("score image: %d rows scored", rows)


def check_non_root(engine: Engine) -> None:
    for service in SERVICES:
        uid = run([engine.name, "exec", container_id(engine, service), "id", "-u"]).stdout.strip()
        if uid == "0":
            raise Failure(f"service {service} runs as root")
        log.info("%s runs as uid %s", service, uid)


def teardown(engine: Engine, keep_images: bool) -> None:
    run(engine.compose("--profile", "pipeline", "down", "-v", "--remove-orphans"), check=False, timeout=300)
    if keep_images:
        return
    run([engine.name, "rmi", "-f", *(f"accident-severity-{t}" for t in TARGETS)], check=False)
    # The untagged stages (uv, deps-*, runtime) and the build cache: what this run built.
    run([engine.name, "image", "prune", "-f"], check=False, timeout=600)
    if engine.name == "docker":
        run(["docker", "builder", "prune", "-f"], check=False, timeout=600)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[containers %(asctime)s] %(message)s", datefmt="%H:%M:%S")

    # A TERM (CI's timeout, a Ctrl-C of make) still tears the stack down.
    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    keep_images = os.environ.get("KEEP_IMAGES") == "1"
    (ROOT / "tests" / "artifacts").mkdir(parents=True, exist_ok=True)
    engine = find_engine()
    log.info("engine: %s (%s)", engine.name, " ".join(engine.compose_cmd))
    busy = [f"{name} ({port})" for name, port in PORTS.items() if port_in_use(port)]
    if busy:
        raise Failure(f"ports the compose file publishes are in use: {busy}")
    timings: dict[str, float] = {}
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="containers-e2e-"))
    try:
        # MLflow first: its server starts (a minute on two busy cores) while the other images build.
        build(engine, timings, TARGETS[:1])
        t = time.monotonic()
        run(engine.compose("up", "-d", "--no-build", "mlflow"), timeout=600)
        build(engine, timings, TARGETS[1:])
        sizes = image_sizes(engine)
        check_images(engine, sizes)
        run(engine.compose("up", "-d", "--no-build", *SERVICES), timeout=600)
        poll("mlflow healthy", lambda: healthy(engine, "mlflow"), timeout=180)
        timings["stack up, mlflow healthy (builds included)"] = time.monotonic() - t

        t = time.monotonic()
        run_pipeline(engine)
        timings["pipeline (first run)"] = time.monotonic() - t
        served = champion()
        version, run_id = str(served["version"]), served["run_id"]
        log.info("champion: version %s, run %s", version, run_id)

        # No reload, no restart: the API follows the alias (API_MODEL_POLL_SECONDS in compose).
        t = time.monotonic()

        def serves_champion() -> bool:
            model = http_json(f"http://127.0.0.1:{PORTS['api']}/ready")["model"]
            return bool(model["version"] == version and model["run_id"] == run_id)

        poll("the API serves the champion", serves_champion, timeout=180)
        timings["API picks up the champion"] = time.monotonic() - t
        prediction = http_json(f"http://127.0.0.1:{PORTS['api']}/predict", a_record())
        if not 0.0 <= prediction["probability"] <= 1.0:
            raise Failure(f"/predict answered {prediction}")
        log.info("/predict: %s", prediction)
        t = time.monotonic()
        check_file_job()
        timings["file job through the API"] = time.monotonic() - t

        t = time.monotonic()
        output = run_pipeline(engine)
        timings["pipeline (second run)"] = time.monotonic() - t
        # Nothing to reproduce: the workspace volume kept dvc.lock and every output.
        if "Running stage" in output or "is cached" in output or len(model_versions()) != 1:
            raise Failure("the second `dvc repro` ran, restored or registered something again")

        t = time.monotonic()
        check_dashboard(version)
        timings["dashboard shows the version"] = time.monotonic() - t
        t = time.monotonic()
        check_score_image(engine, work)
        timings["score image"] = time.monotonic() - t
        check_non_root(engine)
        for service in SERVICES:
            poll(f"{service} healthy", functools.partial(healthy, engine, service), timeout=120)
    finally:
        teardown(engine, keep_images)
        shutil.rmtree(work, ignore_errors=True)
    timings["total"] = time.monotonic() - started
    for target, size in sizes.items():
        log.info("image %-9s %6.0f MB", target, size / 1e6)
    for step, seconds in timings.items():
        log.info("%-30s %6.1f s", step, seconds)
    log.info("containers: all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as exc:
        log.error("FAILED: %s", exc)
        sys.exit(1)
