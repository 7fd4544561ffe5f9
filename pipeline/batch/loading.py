"""The model to score with, loaded in the background while the input is read and checked."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeAlias, TypeVar

from pipeline.batch.stop import wait_for
from pipeline.resolve import ModelLoadError, ResolvedModel, is_mlflow_uri, resolve
from pipeline.settings import PipelineSettings

if TYPE_CHECKING:
    from pipeline.model import LoadedModel

log = logging.getLogger(__name__)

ModelRef: TypeAlias = "LoadedModel | Future[LoadedModel]"  # a model, or one still loading in the background
CHILD_START_TIMEOUT_S = 30.0  # how long stopping waits for the lookup process to have started, to kill it
P = ParamSpec("P")
R = TypeVar("R")


class ModelUnavailable(RuntimeError):
    """The model to score with could not be loaded."""


def loaded_model(model: ModelRef) -> LoadedModel:
    """The model, once loaded (waits for a background load, or until a stop is requested)."""
    return wait_for(model) if isinstance(model, Future) else model


def model_uri(spec: str | None, settings: PipelineSettings) -> str:
    """``--model`` -> what ``load_model`` takes: alias, version number, URI or folder."""
    if not spec:
        return f"models:/{settings.model_name}@{settings.model_alias}"
    if spec.startswith(("models:/", "runs:/")) or Path(spec).is_dir():
        return spec
    if spec.isdigit():
        return f"models:/{settings.model_name}/{spec}"
    alias = spec.removeprefix("@")
    if alias and "/" not in alias and os.sep not in alias:
        return f"models:/{settings.model_name}@{alias}"
    return spec  # load_model explains why it is neither a folder nor a URI


class MlflowProcess:
    """The job's one MLflow process: spawned to look the model up, then reused to log the scoring run.

    Importing MLflow costs about a second of CPU (more on a busy machine): the job pays it once,
    in this process, on the other core while the input is read; a second interpreter for the
    scoring run's log would pay it again. Closing the ``stack`` given to ``start`` kills it.
    """

    def __init__(self, stack: contextlib.ExitStack) -> None:
        # spawn, not fork: this process already runs threads (Arrow's, the loader's).
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(1, mp_context=context, initializer=_quiet_child)
        self._pid = self._executor.submit(os.getpid)  # the worker's id, to stop it: the executor only waits for it
        stack.callback(self._stop)  # bad input is reported without waiting for the model

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run ``fn`` in the process, after what was submitted before."""
        return self._executor.submit(fn, *args, **kwargs)

    def _stop(self) -> None:
        """Cancel what is queued, kill the process if it runs."""
        with contextlib.suppress(TimeoutError, BrokenProcessPool, ProcessLookupError):
            os.kill(self._pid.result(timeout=CHILD_START_TIMEOUT_S), signal.SIGKILL)
        # After the kill, so that the executor's threads see the dead process and end before the
        # interpreter does (ending them first left a feeder thread writing to a closed pipe at exit).
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class ModelLoad:
    """A model loading in the background, and the MLflow process that looks it up (None for a folder)."""

    model: Future[LoadedModel]
    mlflow: MlflowProcess | None


def start_model_load(
    spec: str | None, stack: contextlib.ExitStack, *, n_jobs: int = 1, timings: dict[str, float] | None = None
) -> ModelLoad:
    """Start loading the model to score with; closing ``stack`` stops what still runs.

    An MLflow URI is looked up and downloaded (``pipeline.resolve.resolve``) in an
    ``MlflowProcess``: importing MLflow in a thread of this process would hold the GIL that
    reading and checking the input needs. The files are then loaded in a thread by
    ``pipeline.model``, the API's loader.
    """
    start = time.perf_counter()
    settings = PipelineSettings()
    uri = model_uri(spec, settings)
    lookup: Future[ResolvedModel] | None = None
    process = None
    if not Path(uri).is_dir() and is_mlflow_uri(uri):
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="score-model-")))
        process = MlflowProcess(stack)
        lookup = process.submit(resolve, uri, settings.mlflow_tracking_uri, folder)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model")
    stack.callback(pool.shutdown, wait=False, cancel_futures=True)
    return ModelLoad(pool.submit(_load, uri, lookup, n_jobs, timings, start), process)


def _quiet_child() -> None:
    """The MLflow process reports through its results: no MLflow log lines nor download bar on the job's stderr."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    logging.disable(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops this process


def _load(
    uri: str, lookup: Future[ResolvedModel] | None, n_jobs: int, timings: dict[str, float] | None, start: float
) -> LoadedModel:
    from pipeline.model import load_model, load_resolved

    try:
        model = load_resolved(lookup.result()) if lookup is not None else load_model(uri)
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
    except BrokenProcessPool as exc:
        raise ModelUnavailable(f"cannot load {uri}: the MLflow lookup process died") from exc
    # The thread count only splits rows between threads: every probability stays the same.
    model.booster.set_param({"nthread": max(1, n_jobs)})
    log.info("model %s: version %s, run %s, threshold %.4f", uri, model.version, model.run_id, model.threshold)
    if timings is not None:
        timings["load_model"] = time.perf_counter() - start
    return model
