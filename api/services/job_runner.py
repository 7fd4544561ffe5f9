"""File-scoring jobs run in worker processes, so that the API process's GIL only serves requests.

A job is tens of seconds of pandas and Python. In a thread of the API process it took the GIL
from the event loop in 5 ms slices (``sys.getswitchinterval``), and every await of a /predict
request queued behind one: p99 1.3 s during one job on a loaded machine. In a process of its
own, at a lower CPU priority (``api.services.worker_start``), it only competes for a core, which the kernel
gives back to the waiting request at once.

* The pool is a ``ProcessPoolExecutor`` with the forkserver context and one worker per job slot
  (``API_MAX_CONCURRENT_JOBS``). A worker is forked from the fork server, a single-threaded
  process the API starts (``start_fork_server``, from the lifespan) that has imported the job's
  modules once (``PRELOAD``): no forked copy of the API's threads and locks, as with spawn, but
  no fresh interpreter importing pandas, Arrow, XGBoost and MLflow either. Measured on the
  2-core dev machine (load 1-1.5) with a 150-row upload recorded in MLflow (SQLite): under
  uvicorn, the first job 8 s after ``/ready`` took 0.8 s instead of 5.0-6.6 s with spawn (the
  worker still unpickles the model and opens the store), 3.5-4.3 s instead of 6.2-7.3 s right
  at ``/ready`` (it waits for the server's imports); the next jobs 0.3-0.5 s either way; the
  time to ``/ready`` did not change (6-9 s on that machine). A fresh pool with the server up (a
  new app in the tests, or after a dead worker) scores its first recorded job in 0.9-1.0 s
  instead of about 4 s. The server's imports (about 4 s of CPU, once per API process) run at
  startup beside the model load, at normal priority. The fork server ends with the API process.
* Workers start with the first job and stay; a worker that dies (killed, out of memory) breaks
  the pool, its job fails with ``WorkerLost`` (503) and the next job gets a fresh pool (forked
  in milliseconds). A worker takes the API's temporary folder (``start_worker``): forked from
  the fork server, it would otherwise keep the one the server saw when it started.
* The model: the route's ``LoadedModel`` is pickled once per model object here, and unpickled
  once per model in each worker (``_model``): a job scores with the model the route took, also
  across a reload.
* Cancelling: processes share no ``threading.Event``. The parent creates ``CANCEL_FILE`` in the
  job's folder; a thread in the worker sets the run's stop event when it appears
  (``pipeline.batch.stop.stop_when``), and the orchestrator stops at its next block.
* Errors cross the process boundary pickled (``InputError`` keeps its file, column and rows).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.forkserver
import pickle
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.jobs import Job
from api.services.scoring import UploadJob, score_upload
from api.services.worker_start import start_worker
from pipeline.batch.stop import Cancelled, stop_when
from pipeline.model import LoadedModel

CANCEL_FILE = ".cancel"  # created in a job's folder to stop its run
CANCEL_POLL_S = 0.1  # how often a worker looks for it


class WorkerLost(RuntimeError):
    """The worker process running the job died (killed, out of memory): not the client's fault."""


@dataclass(frozen=True)
class ScoringTask:
    """Everything a worker needs for one job (pickled to it): the upload and the model."""

    upload: UploadJob
    model_key: str
    model_pickle: bytes


# --- in the worker process

_loaded: dict[str, LoadedModel] = {}  # the last model a worker unpickled, by key


def _model(key: str, data: bytes) -> LoadedModel:
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = pickle.loads(data)  # noqa: S301 - our own bytes, from the parent process
    return _loaded[key]


def _watch_cancel(flag: Path, event: threading.Event, done: threading.Event) -> None:
    while not done.wait(CANCEL_POLL_S):
        if flag.exists():
            event.set()
            return


def _run(task: ScoringTask) -> Job | None:
    """Score one saved upload (in a worker); None when cancelled."""
    event, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_cancel, args=(task.upload.folder / CANCEL_FILE, event, done), daemon=True)
    watcher.start()
    try:
        with stop_when(event):
            return score_upload(task.upload, _model(task.model_key, task.model_pickle))
    except Cancelled:
        return None
    finally:
        done.set()
        watcher.join()


# --- in the API process

# What the fork server imports once, so that a worker forked from it starts with them: the job
# code (pandas, Arrow, XGBoost), the scoring run's log (MLflow) and MLflow's SQL store, which
# MLflow imports only when a run is logged to one (the embedded SQLite store of `make run`; 1.7 s).
PRELOAD = (
    "api.services.job_runner",
    "pipeline.monitoring.tracking",
    "pipeline.monitoring.record",
    "mlflow.store.tracking.sqlalchemy_store",
)


def worker_context() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server preloading ``PRELOAD`` (one server per process)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def start_fork_server() -> None:
    """Start the fork server now, in the background (it imports ``PRELOAD``), so that the first
    job does not wait for those imports; nothing when it runs already."""
    worker_context()
    multiprocessing.forkserver.ensure_running()


class JobRunner:
    """The worker processes of file-scoring jobs (``run``), stopped by ``close``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._model: tuple[LoadedModel, str, bytes] | None = None  # the last model pickled
        self._running: set[Path] = set()  # folders of the jobs in the workers

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=worker_context(),
                    initializer=start_worker,
                    initargs=(tempfile.gettempdir(),),
                )
            return self._pool

    def _pickled(self, model: LoadedModel) -> tuple[str, bytes]:
        with self._lock:
            if self._model is None or self._model[0] is not model:
                data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
                self._model = (model, f"{id(model)}-{model.run_id}-{model.version}", data)
            return self._model[1], self._model[2]

    def _submit(self, task: ScoringTask) -> Future[Job | None]:
        try:
            return self._executor().submit(_run, task)
        except BrokenProcessPool:
            self._forget_pool()
            return self._executor().submit(_run, task)

    def _forget_pool(self, *, wait: bool = False) -> None:
        """Drop the pool (the next job starts a new one); ``wait`` for its workers to end."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    async def run(self, upload: UploadJob, model: LoadedModel, cancel: asyncio.Event) -> Job:
        """Score ``upload`` with ``model`` in a worker; raises ``Cancelled`` once ``cancel`` is set
        (after the worker has stopped), ``WorkerLost`` if the worker died, and what ``score_upload`` raises."""
        key, data = await asyncio.to_thread(self._pickled, model)
        task = ScoringTask(upload, key, data)
        folder = upload.folder
        future = asyncio.wrap_future(await asyncio.to_thread(self._submit, task))
        self._running.add(folder)
        stopper = asyncio.ensure_future(cancel.wait())
        try:
            waits: set[asyncio.Future[Any]] = {future, stopper}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not future.done():
                (folder / CANCEL_FILE).touch()
            job = await future  # a cancelled job ends at its next block: seconds at most
        except BrokenProcessPool as exc:
            self._forget_pool()
            raise WorkerLost("the scoring worker stopped unexpectedly; try again") from exc
        finally:
            stopper.cancel()
            if not future.done() and folder.exists():  # this request itself was cancelled
                (folder / CANCEL_FILE).touch()
            self._running.discard(folder)
        if job is None:
            raise Cancelled("the client left")
        return job

    def close(self) -> None:
        """Stop the running jobs at their next block and the workers (called on shutdown)."""
        for folder in list(self._running):
            if folder.exists():
                (folder / CANCEL_FILE).touch()
        self._forget_pool(wait=True)
