"""File-scoring jobs: the files of recent jobs, cached on local disk (the jobs themselves live in MLflow)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.storage import atomic_path

if TYPE_CHECKING:
    from api.services.job_runner import JobRunner

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One scored upload: where its outputs are, and what the response repeats on every page."""

    job_id: str
    folder: Path
    parquet: Path
    rejects_csv: Path
    summary: dict[str, Any]
    rejects: list[dict[str, Any]]
    rejects_total: int
    rows_total: int
    model: dict[str, Any]
    verdict: str | None = None  # the drift verdict, when the job was recorded as a scoring run
    _csv_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # A job comes back pickled from the worker process that scored it; a lock does not pickle.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_csv_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._csv_lock = threading.Lock()

    def csv(self) -> Path:
        """The scored rows as CSV, written on first request (most clients only want one format),
        one Parquet row group at a time."""
        path = self.parquet.with_suffix(".csv")
        with self._csv_lock:
            if not path.exists():
                with atomic_path(path) as tmp, pq.ParquetFile(self.parquet) as parquet:
                    options = pa_csv.WriteOptions(quoting_style="needed")
                    with pa_csv.CSVWriter(tmp, parquet.schema_arrow, write_options=options) as writer:
                        for group in range(parquet.num_row_groups):
                            writer.write_table(parquet.read_row_group(group))
        return path

    def page(self, page: int, page_size: int) -> pd.DataFrame:
        """Rows ``(page - 1) * page_size`` onwards of the scored output: only the row groups that hold them."""
        start = (page - 1) * page_size
        with pq.ParquetFile(self.parquet) as parquet:
            tables: list[pa.Table] = []
            offset = first = 0  # offset: first row of the current group; first: of the first group read
            for group in range(parquet.num_row_groups):
                rows = parquet.metadata.row_group(group).num_rows
                if offset + rows > start and offset < start + page_size:
                    first = offset if not tables else first
                    tables.append(parquet.read_row_group(group))
                offset += rows
            if not tables:
                return parquet.schema_arrow.empty_table().to_pandas()
            return pa.concat_tables(tables).slice(start - first, page_size).to_pandas()


class JobStore:
    """The local cache of job outputs under one temporary folder, removed on ``close``.

    The jobs themselves live in MLflow (``api.services.jobs``): this folder only holds the files
    of recent ones, for pages and downloads. Entries are dropped when unused for ``max_age_s`` or,
    least recently used first, while the folder holds more than ``max_bytes`` (the entry in use
    is kept); a dropped job is downloaded again on its next request. ``max_running`` bounds the
    jobs scoring at once (``try_start`` / ``finish``), in as many worker processes (``runner``,
    started with the first job, stopped by ``close``).
    """

    def __init__(
        self, max_age_s: float = 3600.0, max_bytes: int = 2 << 30, max_running: int = 2, root: Path | None = None
    ) -> None:
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.max_running = max_running
        self.parent = root  # where the temporary folder goes (None: the system's temp folder)
        self.root: Path | None = None  # created on the first job
        self._jobs: OrderedDict[str, tuple[Job, float, int]] = OrderedDict()  # id -> job, last use, bytes
        self._lock = threading.Lock()
        self._running = 0
        self._runner: JobRunner | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> JobStore:
        """A store sized by the API's settings (``API_JOB_CACHE_*``, ``API_MAX_CONCURRENT_JOBS``)."""
        return cls(
            max_age_s=settings.job_cache_max_age_seconds,
            max_bytes=settings.job_cache_max_bytes,
            max_running=settings.max_concurrent_jobs,
            root=settings.job_cache_dir,
        )

    @property
    def runner(self) -> JobRunner:
        """The worker processes that score the jobs."""
        from api.services.job_runner import JobRunner  # it scores Jobs: imported once both exist

        with self._lock:
            if self._runner is None:
                self._runner = JobRunner(self.max_running)
            return self._runner

    def try_start(self) -> bool:
        """Take one of the ``max_running`` job slots; False when all are taken."""
        with self._lock:
            if self._running >= self.max_running:
                return False
            self._running += 1
            return True

    def finish(self) -> None:
        """Give back a job slot."""
        with self._lock:
            self._running = max(0, self._running - 1)

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (empty) folder."""
        with self._lock:
            if self.root is None:
                if self.parent is not None:
                    self.parent.mkdir(parents=True, exist_ok=True)
                self.root = Path(tempfile.mkdtemp(prefix="accident-api-jobs-", dir=self.parent))
            root = self.root
        job_id = uuid.uuid4().hex
        folder = root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def add(self, job: Job) -> None:
        """Keep a job's files, then drop what is too old or over the disk budget."""
        size = sum(f.stat().st_size for f in job.folder.rglob("*") if f.is_file())
        with self._lock:
            self._jobs[job.job_id] = (job, time.monotonic(), size)
            self._jobs.move_to_end(job.job_id)
            dropped = self._evict()
        for old in dropped:
            shutil.rmtree(old.folder, ignore_errors=True)
            log.info("dropped the local copy of scoring job %s", old.job_id)

    def _evict(self) -> list[Job]:
        """Entries to drop (called with the lock held): unused too long, then the oldest over budget."""
        now = time.monotonic()
        dropped = [job for job, used, _ in list(self._jobs.values())[:-1] if now - used > self.max_age_s]
        for job in dropped:
            del self._jobs[job.job_id]
        total = sum(size for _, _, size in self._jobs.values())
        while total > self.max_bytes and len(self._jobs) > 1:
            _, (job, _, size) = self._jobs.popitem(last=False)
            dropped.append(job)
            total -= size
        return dropped

    def get(self, job_id: str) -> Job | None:
        """A job by id (marks it recently used), or None."""
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None:
                return None
            job, _, size = entry
            self._jobs[job_id] = (job, time.monotonic(), size)
            self._jobs.move_to_end(job_id)
            return job

    def discard(self, folder: Path) -> None:
        """Remove the folder of a job that failed before it was added."""
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the running jobs and their workers, forget every job and delete the temporary folder."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        with self._lock:
            self._jobs.clear()
            root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
