"""File-scoring jobs: results kept on disk in a temporary folder, the most recent few only."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.storage import atomic_path

log = logging.getLogger(__name__)

MAX_JOBS = 8


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
    _csv_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
    """A bounded LRU of jobs under one temporary folder, removed on ``close``."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self.root: Path | None = None  # created on the first upload
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (empty) folder."""
        with self._lock:
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="accident-api-jobs-"))
            root = self.root
        job_id = uuid.uuid4().hex
        folder = root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def add(self, job: Job) -> None:
        """Keep a finished job, dropping the least recently used beyond ``max_jobs``."""
        with self._lock:
            self._jobs[job.job_id] = job
            while len(self._jobs) > self.max_jobs:
                _, old = self._jobs.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
                log.info("dropped scoring job %s", old.job_id)

    def get(self, job_id: str) -> Job | None:
        """A job by id (marks it recently used), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs.move_to_end(job_id)
            return job

    def discard(self, folder: Path) -> None:
        """Remove the folder of a job that failed before it was added."""
        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Forget every job and delete the temporary folder."""
        with self._lock:
            self._jobs.clear()
            root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
