"""The served model: loaded in the background, swapped atomically, following the registry alias.

Liveness never waits on MLflow: the lifespan starts ``ModelHolder.run`` as a task and the
app answers at once (``/ready`` says 503 until a model is in). Every load runs in a thread
under a deadline (``API_MODEL_LOAD_DEADLINE_SECONDS``), and MLflow's HTTP calls get a
timeout and few retries (``API_REGISTRY_TIMEOUT_SECONDS``, ``API_REGISTRY_RETRIES``), so a
dead tracking server costs seconds, not minutes.

Following the alias (``API_MODEL_POLL_SECONDS``): every poll asks the registry which
version and run the alias names (one cheap query) and loads that exact version only when it
differs from the one serving. A failed load keeps the old model serving; the same version is
not retried by the poll (``POST /admin/reload`` forces a retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from api.evaluation import Evaluation, load_evaluation
from api.responses import ModelIdentity
from api.settings import Settings
from api.telemetry import Telemetry
from pipeline.model import LoadedModel, ModelLoadError, load_resolved
from pipeline.resolve import resolve

log = logging.getLogger(__name__)

RegistryKey = tuple[str, str | None]
"""What the alias names in the registry: (version, run id). A rebuilt registry reuses
version numbers, never run ids."""


def configure_mlflow(settings: Settings) -> None:
    """Bound MLflow's network calls, and make it see a SQLite registry replaced on disk.

    MLflow caches one SQL store per URI; with its default pool a connection stays open on
    the old (deleted) file after ``make clean && make repro``. ``NullPool`` opens a fresh
    connection per query (a few ms, next to a poll every ``API_MODEL_POLL_SECONDS``).
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(settings.registry_timeout_seconds)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.registry_retries)
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")


def settle_heap(*, replaced: bool) -> None:
    """Collect once, then move every object alive (the libraries, the model) out of the cyclic
    garbage collector's reach (``gc.freeze``), so that full collections scan only what requests
    allocate. Large JSON bodies trigger them; over the whole serving heap each was a pause that
    every request waited through (``python -m benchmarks hostile``: /predict p99 203 ms under a
    flood of hostile bodies, 49 ms frozen).

    When the load ``replaced`` a model, the frozen heap is unfrozen first, so that the previous
    model's objects can be freed; the collection then walks the whole heap (a few tenths of a
    second). A first load only collects what is not frozen: in a process that froze its heap
    before (another app in the same process, as in the tests), that is little.
    """
    if replaced:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def one_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an error, for clients: XGBoost appends a native stack trace."""
    text = exc.message if isinstance(exc, MlflowException) else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def registry_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@dataclass(frozen=True)
class Serving:
    """A loaded model with what was read alongside it."""

    model: LoadedModel
    evaluation: Evaluation | None
    loaded_at: float
    identity: ModelIdentity


class ModelHolder:
    """Holds the current model; a load swaps it atomically, or keeps the old one on failure.

    Readers take ``current`` without locking: replacing one attribute is atomic, and a
    request keeps the ``Serving`` it read even if a reload lands meanwhile.
    """

    def __init__(
        self,
        model_name: str,
        model_alias: str,
        tracking_uri: str,
        deadline_seconds: float = 120.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_alias = model_alias
        self.tracking_uri = tracking_uri
        self.deadline_seconds = deadline_seconds
        self.telemetry = telemetry
        self.current: Serving | None = None
        self.error: str | None = "model not loaded yet"
        self._key: RegistryKey | None = None
        self._failed_key: RegistryKey | None = None
        self._inflight: asyncio.Future[Serving] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, telemetry: Telemetry | None = None) -> ModelHolder:
        """The holder of ``models:/MODEL_NAME@MODEL_ALIAS``."""
        return cls(
            settings.model_name,
            settings.model_alias,
            settings.mlflow_tracking_uri,
            settings.model_load_deadline_seconds,
            telemetry,
        )

    @property
    def model_uri(self) -> str:
        """The registry URI served."""
        return f"models:/{self.model_name}@{self.model_alias}"

    # --- blocking halves, run in a thread

    def registry_key(self) -> RegistryKey:
        """Which version and run the alias names now (one registry query)."""
        db = registry_file(self.tracking_uri)
        if db is not None and not db.is_file():
            # Connecting would create an empty database file wherever the API was started.
            raise ModelLoadError(f"no MLflow registry at {db} (MLFLOW_TRACKING_URI); run the pipeline first")
        import mlflow

        try:
            client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            version = client.get_model_version_by_alias(self.model_name, self.model_alias)
        except MlflowException as exc:
            raise ModelLoadError(f"cannot load {self.model_uri}: {one_line(exc)}") from exc
        except OSError as exc:
            raise ModelLoadError(f"cannot load {self.model_uri}: {exc}") from exc
        return str(version.version), version.run_id

    def _load_blocking(self, key: RegistryKey | None = None) -> Serving:
        """Load the version the alias names (``key``, else asked now), then swap it in."""
        with self._lock:
            start = time.perf_counter()
            try:
                key = key or self.registry_key()
                with tempfile.TemporaryDirectory(prefix="accident-api-model-") as tmp:
                    # The exact version asked about, so a concurrent alias move cannot mix identities.
                    resolved = resolve(f"models:/{self.model_name}/{key[0]}", self.tracking_uri, Path(tmp))
                    model = load_resolved(dataclasses.replace(resolved, alias=self.model_alias, uri=self.model_uri))
                evaluation = load_evaluation(model.run_id, self.tracking_uri)
            except (ModelLoadError, MlflowException, OSError) as exc:
                self.error = one_line(exc)
                if key is not None:
                    self._failed_key = key
                log.warning("cannot load %s: %s", self.model_uri, self.error)
                raise ModelLoadError(self.error) from exc
            serving = Serving(model, evaluation, time.time(), ModelIdentity(**model.describe()))
            replaced = self.current is not None
            self.current, self.error, self._key, self._failed_key = serving, None, key, None
            settle_heap(replaced=replaced)
            log.info(
                "serving %s v%s (run %s) loaded in %.2f s",
                model.name,
                model.version,
                model.run_id,
                time.perf_counter() - start,
            )
            return serving

    # --- async API, for the lifespan and the routes

    async def _in_thread(self, key: RegistryKey | None) -> Serving:
        """One load at a time, bounded by the deadline; a load that overran finishes (and
        swaps in) on its own, and later callers wait on it instead of starting another."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self._load_blocking, key))
            # Retrieve the exception even when nobody awaits an overrun load.
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(self._inflight), self.deadline_seconds)
        except TimeoutError as exc:
            self.error = (
                f"loading {self.model_uri} took over {self.deadline_seconds:g} s "
                "(API_MODEL_LOAD_DEADLINE_SECONDS); it goes on in the background"
            )
            log.warning("%s", self.error)
            raise ModelLoadError(self.error) from exc

    async def load(self) -> Serving:
        """Load what the alias names now and swap it in; raises ModelLoadError (the current
        model keeps serving) on failure or past the deadline."""
        return await self._in_thread(None)

    async def follow(self) -> Serving | None:
        """One poll: load the alias's version if it is not the one serving. Returns the new
        serving model, or None when nothing changed (or the new version already failed)."""
        try:
            key = await asyncio.wait_for(asyncio.to_thread(self.registry_key), self.deadline_seconds)
        except TimeoutError as exc:
            raise ModelLoadError(f"the registry did not answer within {self.deadline_seconds:g} s") from exc
        if key == self._key or key == self._failed_key:
            return None
        previous = self.current
        try:
            serving = await self._in_thread(key)
        except ModelLoadError:
            self._count("follow_failed")
            if previous is not None:
                log.error(
                    "%s now names v%s (run %s), which failed to load; still serving v%s",
                    self.model_uri,
                    key[0],
                    key[1],
                    previous.identity.version,
                )
            raise
        self._count("followed")
        if previous is not None:
            log.warning(
                "%s moved: now serving v%s (run %s) instead of v%s (run %s)",
                self.model_uri,
                serving.identity.version,
                serving.identity.run_id,
                previous.identity.version,
                previous.identity.run_id,
            )
        return serving

    async def run(self, poll_seconds: float) -> None:
        """The background task: load now (unless a model is in already, e.g. a lifespan run
        again), then follow the alias every ``poll_seconds`` (0 = never)."""
        if self.current is None:
            try:
                await self.load()
            except ModelLoadError:
                hint = f"retrying every {poll_seconds:g} s" if poll_seconds else "POST /admin/reload retries"
                log.error("no model yet; %s (%s)", hint, self.error)
        if not poll_seconds:
            return
        last_error: str | None = None
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.follow()
                last_error = None
            except ModelLoadError as exc:
                # Logged when it changes: a registry down for a day is one line, not thousands.
                if str(exc) != last_error:
                    log.warning("polling %s: %s", self.model_uri, exc)
                last_error = str(exc)

    def start(self, poll_seconds: float) -> None:
        """Start the background task (from a running event loop: the lifespan)."""
        self._task = asyncio.create_task(self.run(poll_seconds), name="model-holder")

    async def stop(self) -> None:
        """Cancel the background task; a load running in a thread is left to finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _count(self, outcome: str) -> None:
        if self.telemetry is not None:
            self.telemetry.model_reloads.labels(outcome=outcome).inc()
