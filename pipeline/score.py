"""Batch scoring: raw BAAC files or flat accident records -> probabilities in Parquet.

Input is either the four raw tables of one year (a folder, a zip, or the files), read with
``pipeline.ingest`` and aggregated with ``records_from_tables``, or one flat CSV of
accident records (``RECORD_COLUMNS``, optional ``Num_Acc`` and ``severe``), typed and
checked with ``check_records`` block by block so that memory stays bounded. Every
probability comes from ``LoadedModel.predict_frame``: the features of training,
``evaluate`` and the API.

Outputs, each written to a temporary file and renamed only when the whole run succeeds:
``OUT.parquet`` (one row per scored accident), ``OUT.rejects.csv`` (one row per bad cell
or line) and ``OUT.summary.json`` (counts, score distribution, metrics when the truth is
known, timings, input checksums, model identity).

Memory for a flat CSV: the blocks in flight (``READ_AHEAD_BYTES`` of CSV, in blocks of
``--block-size``), plus, per row of the file, its probability and outcome (16 bytes, for the
summary) and its id if it has one (to catch repeated ids: 16 bytes for an integer id, ~100
bytes for any other, kept as a Python string).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import difflib
import gc
import gzip
import hashlib
import importlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.config import BUNDLED_DIR, PREDICTIONS_DIR, ROOT, params
from pipeline.errors import InputError
from pipeline.ingest import SCHEMA, find_tables, identify, read_year
from pipeline.metrics import classification_metrics, confusion
from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, TARGET, check_records, records_from_tables
from pipeline.resolve import ModelLoadError, ResolvedModel, is_mlflow_uri
from pipeline.settings import PipelineSettings
from pipeline.storage import atomic_path, sha256_of

if TYPE_CHECKING:
    from pipeline.model import LoadedModel

log = logging.getLogger(__name__)

EXIT_INPUT = 2
EXIT_MODEL = 3
EXIT_IO = 4
EXIT_INTERRUPTED = 130
DEFAULT_MAX_REJECT_RATE = 0.01
BLOCK_SIZE = 8 << 20  # bytes of CSV per block: ~40,000 records; larger blocks only cost memory
READ_AHEAD_BYTES = 256 << 20  # CSV read and checked ahead of scoring: 32 blocks, ~500 MB once typed
MIN_BLOCK_SIZE = 4096
ROW_GROUP_ROWS = 100_000
MAX_UNZIPPED_BYTES = 4 << 30  # refuse zip bombs
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
# The cells check_records treats as missing, read as null so that clean numeric columns cast in one go.
MISSING_TOKENS: tuple[str, ...] = ("", "N/A", "NA", "nan", "None")
ID_ALIASES: Mapping[str, str] = {"num_acc": ID_COLUMN, "accident_id": ID_COLUMN, TARGET: TARGET}
REJECT_COLUMNS: tuple[str, ...] = ("id", "line", "column", "value", "reason")
MODEL_COLUMNS: tuple[str, ...] = ("model_name", "model_version", "model_alias", "run_id")
# Record fields that no raw table has: a header holding most of them is a flat records file.
_RAW_COLUMNS = frozenset(c.lower() for table in SCHEMA.values() for c in table)
_RECORD_ONLY = frozenset(c for c in RECORD_COLUMNS if c.lower() not in _RAW_COLUMNS)
_NUMERIC = frozenset(f.name for f in FIELDS.values() if f.kind in ("int", "float", "code"))
# Where a record column comes from in the raw tables, to point rejects at the right line.
_RAW_SOURCE: Mapping[str, tuple[str, str]] = {
    **{c: ("caracteristiques", c) for c in SCHEMA["caracteristiques"] if c in FIELDS},
    "heure": ("caracteristiques", "hrmn"),
    "minute": ("caracteristiques", "hrmn"),
    **{c: ("lieux", c) for c in SCHEMA["lieux"] if c in FIELDS},
}


# ---------------------------------------------------------------------------
# public API


@dataclass
class ScoreResult:
    """Everything a scoring run produces."""

    scored: pd.DataFrame  # id, proba, label, threshold, model identity, scored_at (+ record columns)
    rejects: pd.DataFrame  # id, line, column, value, reason
    summary: dict[str, Any]  # the JSON summary


def score_paths(
    paths: Sequence[Path],
    model: LoadedModel,
    *,
    with_features: bool = False,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> ScoreResult:
    """Score raw BAAC files or a flat records CSV in memory; raises ``InputError`` on bad input."""
    start = time.perf_counter()
    scored_at = _now()
    scored: list[pd.DataFrame] = []
    rejects: list[pd.DataFrame] = []
    tally = Tally()
    with contextlib.ExitStack() as stack:
        source = resolve_inputs(paths, stack)
        for batch in iter_batches(source, model, with_features=with_features):
            tally.add(batch)
            scored.append(output_frame(batch, model, scored_at))
            rejects.append(batch.rejects)
        check_policy(tally, max_reject_rate, source)
        summary = summarise(tally, source, model, scored_at, max_reject_rate, time.perf_counter() - start)
    return ScoreResult(pd.concat(scored, ignore_index=True), _sorted_rejects(rejects), summary)


def write_result(result: ScoreResult, output: Path) -> None:
    """Write a result atomically: ``output`` (Parquet), ``.rejects.csv`` and ``.summary.json``."""
    id_type = pa.int64() if pd.api.types.is_integer_dtype(result.scored["id"].dtype) else pa.string()
    with OutputFiles(output, with_features=RECORD_COLUMNS[0] in result.scored.columns, id_type=id_type) as out:
        out.write_scored(result.scored)
        out.write_rejects(result.rejects)
        out.write_summary(result.summary)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score files to Parquet; returns the exit code."""
    from pipeline.cli import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        inputs, output = job_paths(args)
        for path in inputs:  # the commonest mistake, reported before anything slow starts
            if not path.exists():
                raise InputError("no such file or folder", file=path)
        timings: dict[str, float] = {}
        with contextlib.ExitStack() as stack:
            # The model loads in the background while the input is read and checked.
            model = start_model_load(args.model, stack, n_jobs=args.n_jobs, timings=timings)
            summary = score_to_files(
                inputs,
                output,
                model,
                with_features=args.with_features,
                max_reject_rate=args.max_reject_rate,
                block_size=args.block_size,
                timings=timings,
            )
    except InputError as exc:
        return _fail(exc, EXIT_INPUT)
    except ModelUnavailable as exc:
        return _fail(exc, EXIT_MODEL)
    except OSError as exc:  # disk full, a file removed or made unreadable mid-run...
        return _fail(f"file system error, nothing written: {exc}", EXIT_IO)
    except KeyboardInterrupt:
        return _fail("interrupted, nothing written", EXIT_INTERRUPTED)
    counts = summary["counts"]
    log.info(
        "scored %d of %d rows (%d rejected, %d predicted severe) -> %s",
        counts["scored"],
        counts["input_rows"],
        counts["rejected"],
        counts["predicted_severe"],
        output,
    )
    return 0


# ---------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.score",
        description="Score road accidents with the registered severity model. INPUT is the four raw BAAC "
        "tables of one year (a folder, a .zip, or the four files) or one flat CSV of accident records "
        "(the accident record's columns, optional Num_Acc and severe; ';' or ','; UTF-8 or latin-1).",
        epilog="Writes OUT, OUT.rejects.csv and OUT.summary.json, all or nothing. Exit codes: 0 ok; "
        f"{EXIT_INPUT} bad input (one line naming the file, line and column); {EXIT_MODEL} model not found; "
        f"{EXIT_IO} file system error (disk full...); {EXIT_INTERRUPTED} interrupted.",
    )
    parser.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="folder, .zip or CSV files")
    parser.add_argument("-o", "--output", type=Path, help="Parquet file to write, e.g. scores.parquet")
    parser.add_argument(
        "--model",
        default=None,
        help="alias (@candidate or candidate), version number, models:/ or runs:/ URI, or a local model "
        "folder. Default: models:/$MODEL_NAME@$MODEL_ALIAS (accident-severity@champion) in "
        "$MLFLOW_TRACKING_URI (default sqlite:///mlflow.db)",
    )
    parser.add_argument("--with-features", action="store_true", help="also write the typed record columns")
    parser.add_argument(
        "--max-reject-rate",
        type=_rate,
        default=DEFAULT_MAX_REJECT_RATE,
        help="fail, writing nothing, when a larger share of rows is rejected (default: %(default)s)",
    )
    parser.add_argument("--n-jobs", type=int, default=_cpu_count(), help="prediction threads (default: all cores)")
    parser.add_argument(
        "--block-size", type=_block_size, default=BLOCK_SIZE, help="bytes of flat CSV per block (default: 8 MiB)"
    )
    parser.add_argument(
        "--stage",
        action="store_true",
        help="DVC stage: score data/bundled/baac/<score.year> into data/predictions/<year>.parquet",
    )
    return parser


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate between 0 and 1")
    return value


def _block_size(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < MIN_BLOCK_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least {MIN_BLOCK_SIZE} bytes (a few lines)")
    return value


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_paths(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """Inputs and output from the arguments, or from params.yaml for ``--stage``."""
    if args.stage:
        if args.inputs or args.output:
            raise InputError("--stage takes no INPUT nor --output (they come from params.yaml: score.year)")
        year = params().score.year
        folder = BUNDLED_DIR / str(year)
        # Relative to the project root, so the summary DVC tracks names no machine path.
        return [
            folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        ], PREDICTIONS_DIR / f"{year}.parquet"
    if not args.inputs:
        raise InputError("no INPUT given (a folder, a .zip, or CSV files)")
    if args.output is None:
        raise InputError("--output is required (the Parquet file to write)")
    return list(args.inputs), args.output


def _fail(error: Exception | str, code: int) -> int:
    message = " ".join(str(error).split())  # one line, whatever the underlying library wrote
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - the CLI's one-line message
    return code


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


class ModelUnavailable(RuntimeError):
    """The model to score with could not be loaded."""


def start_model_load(
    spec: str | None, stack: contextlib.ExitStack, *, n_jobs: int = 1, timings: dict[str, float] | None = None
) -> Future[LoadedModel]:
    """Start loading the model to score with, in the background; closing ``stack`` stops what still runs.

    An MLflow URI is resolved (registry lookup, download) by ``python -m pipeline.resolve`` in a
    child process: importing MLflow costs about a second of CPU, which in a thread of this
    process would hold the GIL that reading and checking the input needs. Either way the model
    is loaded by ``pipeline.model``, the API's loader.
    """
    start = time.perf_counter()
    settings = PipelineSettings()
    uri = model_uri(spec, settings)
    child: subprocess.Popen[str] | None = None
    if not Path(uri).is_dir() and is_mlflow_uri(uri):
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="score-model-"))
        command = [sys.executable, "-m", "pipeline.resolve", uri, "--tracking-uri", settings.mlflow_tracking_uri]
        # MLflow's download bar would draw over this job's own progress bar.
        env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        # Its stderr is captured: the job's own stays one line on failure, whatever MLflow logs.
        child = subprocess.Popen(
            [*command, "--dst", folder], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        stack.callback(_stop, child)  # bad input is reported without waiting for the model
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model")
    stack.callback(pool.shutdown, wait=False, cancel_futures=True)
    return pool.submit(_load_scoring_model, uri, child, n_jobs, timings, start)


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()


def _load_scoring_model(
    uri: str, child: subprocess.Popen[str] | None, n_jobs: int, timings: dict[str, float] | None, start: float
) -> LoadedModel:
    import_xgboost()
    from pipeline.model import load_model, load_resolved

    try:
        model = load_resolved(_resolved(uri, child)) if child is not None else load_model(uri)
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
    # The thread count only splits rows between threads: every probability stays the same.
    model.booster.set_param({"nthread": max(1, n_jobs)})
    log.info("model %s: version %s, run %s, threshold %.4f", uri, model.version, model.run_id, model.threshold)
    if timings is not None:
        timings["load_model"] = time.perf_counter() - start
    return model


def _resolved(uri: str, child: subprocess.Popen[str]) -> ResolvedModel:
    """What ``python -m pipeline.resolve`` printed: the model's folder, or why it could not find it."""
    out, err = child.communicate()
    for line in err.splitlines():
        log.debug("MLflow lookup: %s", line)
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = next((line.strip() for line in reversed(err.splitlines()) if line.strip()), "")
        why = f"the MLflow lookup exited with code {child.returncode}" + (f" ({last})" if last else "")
        answer = {"error": f"cannot load {uri}: {why}"}
    if "error" in answer or child.returncode != 0:
        raise ModelLoadError(answer.get("error", f"cannot load {uri}"))
    return ResolvedModel.from_dict(answer)


def import_xgboost() -> None:
    """Import XGBoost without scikit-learn, unless something has imported them already.

    ``xgboost.compat`` imports scikit-learn (and with it scipy) only to define its
    scikit-learn-style estimators, which scoring never uses: 0.6 s of CPU on each run. An
    entry of None in ``sys.modules`` makes that import fail, so XGBoost skips them.
    """
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        importlib.import_module("xgboost")
    finally:
        del sys.modules["sklearn"]


ModelRef: TypeAlias = "LoadedModel | Future[LoadedModel]"  # a model, or one still loading in the background


def ready(model: ModelRef) -> LoadedModel:
    """The model, once loaded."""
    return model.result() if isinstance(model, Future) else model


# ---------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class InputFile:
    """A file to read: where it is on disk, and how to name it to the user."""

    path: Path
    name: str


@dataclass(frozen=True)
class RawSource:
    """The four raw tables of one year."""

    files: tuple[InputFile, ...]
    archives: tuple[InputFile, ...] = ()


@dataclass(frozen=True)
class FlatSource:
    """One flat CSV of accident records, its header checked."""

    file: InputFile
    separator: str
    columns: tuple[str, ...]  # header as written
    canonical: Mapping[str, str]  # header name -> record column, Num_Acc or severe
    sha256: str
    size: int
    encoding: str  # "utf-8", or "latin-1" when the bytes are not UTF-8
    archives: tuple[InputFile, ...] = ()

    def header_of(self, column: str) -> str | None:
        """The header name of a record column, Num_Acc or severe, if the file has it."""
        return next((h for h, c in self.canonical.items() if c == column), None)


Source = RawSource | FlatSource


def resolve_inputs(paths: Sequence[Path], stack: contextlib.ExitStack) -> Source:
    """Tell raw tables from a flat records file by their headers; zips are extracted into ``stack``'s temp dir."""
    if not paths:
        raise InputError("no input given")
    files: list[InputFile] = []
    archives: list[InputFile] = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputError("no such file or folder", file=path)
        if path.is_dir():
            files.extend(InputFile(f, str(f)) for f in sorted(path.iterdir()) if _visible_file(f))
        elif path.suffix.lower() == ".zip":
            archives.append(InputFile(path, str(path)))
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="score-zip-")))
            files.extend(extract_zip(path, folder))
        else:
            files.append(InputFile(path, str(path)))
    if not files:
        raise InputError("no files found", file=", ".join(str(p) for p in paths))
    flat = [f for f in files if classify(f) == "flat"]
    if not flat:
        return RawSource(tuple(files), tuple(archives))
    if len(files) > 1:
        other = next(f for f in files if f is not flat[0])
        raise InputError(
            f"give one records file, or the four raw tables, not both (also got {other.name})", file=flat[0].name
        )
    return flat_source(flat[0], tuple(archives))


def _visible_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".")


def extract_zip(archive: Path, folder: Path) -> list[InputFile]:
    """Extract the CSVs of a zip safely (no absolute paths, ``..`` or links); any other file is an error."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable zip archive ({exc})", file=archive) from exc
    out: list[InputFile] = []
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise InputError(f"zip archive expands to more than {MAX_UNZIPPED_BYTES >> 30} GiB", file=archive)
        for member in members:
            inner = PurePosixPath(member.filename)
            name = f"{archive}:{member.filename}"
            if inner.is_absolute() or ".." in inner.parts or "\\" in member.filename:
                raise InputError("unsafe path in zip archive (absolute or with '..')", file=name)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise InputError("symbolic link in zip archive", file=name)
            if inner.parts[0] == "__MACOSX" or inner.name.startswith("."):
                log.info("ignoring %s (hidden file or macOS metadata)", name)
                continue
            if not inner.name.lower().endswith((".csv", ".csv.gz")):
                raise InputError(
                    "unrelated file in zip archive: expected only the four BAAC tables or one records CSV",
                    file=name,
                )
            dest = folder.joinpath(*inner.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(member) as src, dest.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            # zipfile raises RuntimeError for encrypted members, NotImplementedError for odd compressions.
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
                raise InputError(f"cannot extract from zip archive ({exc})", file=name) from exc
            out.append(InputFile(dest, name))
    return out


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


@contextlib.contextmanager
def _open_data(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzipped."""
    if _is_gzip(path):
        with gzip.open(path, "rb") as gz:
            yield cast(IO[bytes], gz)
    else:
        with path.open("rb") as fh:
            yield fh


def read_header(file: InputFile) -> tuple[list[str], str]:
    """The header's fields and the separator that splits it into the most fields (';', ',', tab or '|')."""
    try:
        with _open_data(file.path) as fh:
            line = fh.readline(1 << 20).rstrip(b"\r\n")
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read file ({exc})", file=file.name) from exc
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
    best: tuple[list[str], str] = ([text.strip()] if text.strip() else [], ";")
    for sep in (";", ",", "\t", "|"):
        fields = next(csv.reader([text], delimiter=sep), [])
        if len(fields) > len(best[0]):
            best = ([f.strip() for f in fields], sep)
    return best


def classify(file: InputFile) -> str:
    """``"flat"`` for a records CSV (by its header), ``"raw"`` for a BAAC table (by its name)."""
    fields, _ = read_header(file)
    if len({f.lower() for f in fields} & _RECORD_ONLY) * 2 >= len(_RECORD_ONLY):
        return "flat"
    try:
        identify(file.path)
    except InputError:
        if not fields:
            raise InputError("file is empty", file=file.name, rows=[1]) from None
        shown = ", ".join(fields[:6]) + (", ..." if len(fields) > 6 else "")
        raise InputError(
            f"neither a raw BAAC table (by its name) nor a records file (by its header: {shown})",
            file=file.name,
            rows=[1],
        ) from None
    return "raw"


def flat_source(file: InputFile, archives: tuple[InputFile, ...] = ()) -> FlatSource:
    """Check a records file's header (separator, missing and duplicate columns) and its encoding."""
    fields, sep = read_header(file)
    if sep not in (";", ","):
        raise InputError(f"wrong separator: expected ';' or ',' (found {sep!r})", file=file.name, rows=[1])
    known = {c.lower(): c for c in RECORD_COLUMNS} | dict(ID_ALIASES)
    canonical: dict[str, str] = {}
    for name in fields:
        column = known.get(name.lower())
        if column is None:
            continue
        if column in canonical.values():
            raise InputError("duplicate column", file=file.name, column=name, rows=[1])
        canonical[name] = column
    missing = [c for c in RECORD_COLUMNS if c not in canonical.values()]
    if missing:
        close = difflib.get_close_matches(missing[0], [f for f in fields if f not in canonical], n=1)
        hint = f"; found {close[0]!r} instead (renamed?)" if close else ""
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"missing column{more}{hint}", file=file.name, column=missing[0], rows=[1])
    extra = [f for f in fields if f not in canonical]
    if extra:
        log.info("%s: ignoring columns %s", file.name, extra)
    sha, size, encoding = file_digest(file.path)
    if encoding != "utf-8":
        log.info("%s is not UTF-8: reading it as latin-1", file.name)
    return FlatSource(file, sep, tuple(fields), canonical, sha, size, encoding, archives)


class Utf8Check:
    """Whether a stream of byte blocks is valid UTF-8 (ASCII blocks cost next to nothing)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.valid = True

    def feed(self, block: bytes, final: bool = False) -> None:
        """Check one more block."""
        # An ASCII block needs decoding only to finish a character the previous block started.
        if not self.valid or (block.isascii() and not self._decoder.getstate()[0] and not final):
            return
        try:
            self._decoder.decode(block, final=final)
        except UnicodeDecodeError:
            self.valid = False


def file_digest(path: Path) -> tuple[str, int, str]:
    """SHA-256 and size of a file, and its text encoding: "utf-8", else "latin-1"."""
    digest = hashlib.sha256()
    check = Utf8Check()
    size = 0
    gzipped = _is_gzip(path)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
            if not gzipped:
                check.feed(block)
    if gzipped:
        with gzip.open(path, "rb") as text:
            for block in iter(lambda: text.read(1 << 22), b""):
                check.feed(block)
    check.feed(b"", final=True)
    return digest.hexdigest(), size, "utf-8" if check.valid else "latin-1"


# ---------------------------------------------------------------------------
# batches: scored rows and rejects, from either kind of input


@dataclass
class Batch:
    """Scored rows and rejects from one block of input."""

    ids: np.ndarray
    proba: np.ndarray
    label: np.ndarray
    outcome: np.ndarray | None  # 0/1 truth, NaN when unknown; None when the input has no outcome
    features: pd.DataFrame | None
    rejects: pd.DataFrame
    input_rows: int
    rejected_rows: int
    file: str  # the file the rejects' lines refer to...
    files: Mapping[str, str] = field(default_factory=dict)  # ...or, by rejected column, when it depends
    timings: dict[str, float] = field(default_factory=dict)


def empty_rejects() -> pd.DataFrame:
    """A rejects frame with no rows."""
    return _EMPTY_REJECTS.copy()


def _reject_frame(ids: Any, lines: Any, column: Any, value: Any, reason: Any) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="string"),
            "line": pd.Series(lines, dtype="int64"),
            "column": column,
            "value": pd.Series(value, dtype="string"),
            "reason": reason,
        }
    )
    return frame.astype({"column": "string", "reason": "string"})


_EMPTY_REJECTS = _reject_frame([], [], [], [], [])  # built once: most blocks have no rejects


def _sorted_rejects(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_rejects()
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["line", "column"], kind="stable", ignore_index=True)


def score_records(records: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    """Probability and 0/1 label (``proba >= threshold``, as in ``evaluate``) of typed records."""
    proba = model.predict_frame(records) if len(records) else np.array([], dtype=np.float64)
    return pd.DataFrame({"proba": proba, "label": (proba >= model.threshold).astype(np.int8)}, index=records.index)


def iter_batches(
    source: Source, model: ModelRef, *, with_features: bool = False, block_size: int = BLOCK_SIZE
) -> Iterator[Batch]:
    """Scored batches from either kind of input."""
    if isinstance(source, RawSource):
        yield raw_batch(source, model, with_features=with_features)
    else:
        yield from flat_batches(source, model, with_features=with_features, block_size=block_size)


def _renamed(exc: InputError, files: Sequence[InputFile]) -> InputError:
    """The same error, naming files as the user knows them (zip members, not temporary paths)."""
    where = exc.file
    if where is None:
        return exc
    for f in files:
        where = where.replace(str(f.path), f.name)
    return InputError(exc.reason, file=where, column=exc.column, rows=exc.rows)


def raw_batch(source: RawSource, model: ModelRef, *, with_features: bool = False) -> Batch:
    """Read, check and score the four raw tables of one year (one year is small: read whole)."""
    start = time.perf_counter()
    try:
        found = find_tables([f.path for f in source.files])
        tables = read_year(found)
    except InputError as exc:
        raise _renamed(exc, source.files) from exc
    names = {f.path: f.name for f in source.files}
    table_file = {table: names[tf.path] for table, tf in found.items()}
    carac = tables["caracteristiques"]
    dup = carac[ID_COLUMN].duplicated(keep=False).to_numpy()
    dup_ids = carac[ID_COLUMN][dup].astype(str).to_numpy()
    dup_rejects = _reject_frame(dup_ids, np.flatnonzero(dup) + 2, ID_COLUMN, dup_ids, "duplicate id")
    # A repeated Num_Acc makes every vehicle and person of that id ambiguous: reject all its rows.
    tables["caracteristiques"] = carac[~dup]
    records = records_from_tables(tables, max_vma=ready(model).spec.max_vma)
    read_seconds = time.perf_counter() - start

    start = time.perf_counter()
    typed, cells = check_records(records[list(RECORD_COLUMNS)], first_line=0)
    cell_rejects = raw_cell_rejects(cells, records[ID_COLUMN].to_numpy(), tables)
    # Score the records as records_from_tables built them (as evaluate does), not check_records' copies.
    valid = records.loc[typed.index]
    check_seconds = time.perf_counter() - start

    loaded = ready(model)
    start = time.perf_counter()
    scores = score_records(valid, loaded)
    predict_seconds = time.perf_counter() - start
    return Batch(
        ids=valid[ID_COLUMN].to_numpy(dtype=np.int64),
        proba=scores["proba"].to_numpy(),
        label=scores["label"].to_numpy(),
        outcome=valid[TARGET].to_numpy(dtype=np.float64),
        features=valid[list(RECORD_COLUMNS)].reset_index(drop=True) if with_features else None,
        rejects=_sorted_rejects([dup_rejects, cell_rejects]),
        input_rows=len(carac),
        rejected_rows=int(dup.sum()) + len(records) - len(typed),
        file=table_file["caracteristiques"],
        files={raw: table_file[table] for table, raw in _RAW_SOURCE.values()},
        timings={"read": read_seconds, "check": check_seconds, "predict": predict_seconds},
    )


def raw_cell_rejects(cells: pd.DataFrame, ids: np.ndarray, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """check_records' rejects (positions in the records) -> Num_Acc, and the line and column of the raw table."""
    if cells.empty:
        return empty_rejects()
    acc = ids[cells["line"].to_numpy()]
    line_of = {
        table: pd.Series(np.arange(len(tables[table])) + 2, index=tables[table][ID_COLUMN]).groupby(level=0).first()
        for table in ("caracteristiques", "lieux")
    }
    where = [_RAW_SOURCE.get(c, ("caracteristiques", c)) for c in cells["column"]]
    lines = [int(line_of[table].get(a, -1)) for (table, _), a in zip(where, acc, strict=True)]
    columns = [raw for _, raw in where]
    return _reject_frame(acc.astype(str), lines, columns, cells["value"].to_numpy(), cells["reason"].to_numpy())


# ---------------------------------------------------------------------------
# flat records, streamed


class InvalidRows:
    """Lines pyarrow could not split into the header's number of fields: skipped, then rejected."""

    def __init__(self) -> None:
        self.new: list[tuple[int, str, str]] = []  # line, text, reason: not reported yet
        self._lines: list[int] = []
        self._seen: set[int] = set()  # read_blocks may read a block twice: each line counts once
        self._sorted = np.array([], dtype=np.int64)

    def __call__(self, row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        if line in self._seen and line >= 0:
            return "skip"
        self._seen.add(line)
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        self.new.append((line, str(row.text)[:200], reason))
        self._lines.append(line)
        return "skip"

    def lines(self) -> np.ndarray:
        """Sorted lines of every invalid row seen so far."""
        if len(self._sorted) != len(self._lines):
            self._sorted = np.sort(np.array(self._lines, dtype=np.int64))
        return self._sorted

    def take_new(self) -> pd.DataFrame:
        """Rejects for the invalid rows not reported yet (no id: the line could not be split)."""
        new, self.new = self.new, []
        return _reject_frame([None] * len(new), [r[0] for r in new], "", [r[1] for r in new], [r[2] for r in new])


def physical_lines(parsed: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """File line of parsed rows (0-based among the rows pyarrow kept), given the sorted lines it skipped."""
    rank = parsed + 1  # rank among the data lines that were kept
    shift = (skipped - 1) - np.arange(len(skipped))  # data-line numbers of skipped lines, minus earlier skips
    return rank + np.searchsorted(shift, rank, side="right") + 1


def open_records_csv(
    source: FlatSource, block_size: int, invalid: InvalidRows, *, typed: bool = False
) -> pa_csv.CSVStreamingReader:
    """A streaming reader of the record columns (missing tokens as null): numeric ones parsed
    as float64 when ``typed``, else every column as text."""
    wanted = list(source.canonical)
    number = pa.float64() if typed else pa.string()
    path = str(source.file.path)
    try:
        stream = pa.input_stream(path, compression="gzip" if _is_gzip(source.file.path) else None)
        return pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(
                use_threads=False,  # so that pyarrow gives the line of each malformed row
                block_size=block_size,
                column_names=list(source.columns),
                skip_rows=1,
                encoding=source.encoding,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=source.separator, ignore_empty_lines=False, invalid_row_handler=invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: number if source.canonical[c] in _NUMERIC else pa.string() for c in wanted},
                include_columns=wanted,
                null_values=list(MISSING_TOKENS),
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read CSV ({exc})", file=source.file.name, rows=[2]) from exc


def numeric_or_text(values: pa.ChunkedArray) -> np.ndarray | pd.Series:
    """A clean numeric column as float64 (NaN when missing); anything else as text, for check_records.

    check_records parses clean numbers exactly so, only slower; a column holding spaces,
    decimal commas, NaN, infinities or text takes check_records' text path untouched.
    A column the reader already parsed (``read_blocks``) holds only finite numbers and nulls.
    """
    if pa.types.is_float64(values.type):
        return values.to_numpy(zero_copy_only=False)  # nulls -> NaN
    try:
        number = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return values.to_pandas()
    array = number.to_numpy(zero_copy_only=False)  # nulls (missing cells) -> NaN
    finite = np.isfinite(array)
    if not finite.all() and np.count_nonzero(~finite) != number.null_count:
        return values.to_pandas()  # "NaN" or "inf" written in the file
    return array


def blank_rows(block: pa.RecordBatch) -> np.ndarray:
    """Rows with every column empty: blank lines, which pyarrow reads as rows of nulls."""
    blank = np.ones(block.num_rows, dtype=bool)
    for column in block.columns:
        if column.null_count == 0:
            return np.zeros(block.num_rows, dtype=bool)
        blank &= column.is_null().to_numpy(zero_copy_only=False)
    return blank


# Ids written as plain integers (no sign, no leading zero, int64) map one to one to their int64 value.
_INTEGER_ID = r"^(0|[1-9][0-9]{0,17})$"


def _no_ints() -> np.ndarray:
    return np.array([], dtype=np.int64)


@dataclass
class FlatState:
    """What the blocks of one file share: the rows parsed before, and the ids seen."""

    rows_before: int = 0
    # Integer ids (the usual Num_Acc), sorted, and the line each was first seen on: 16 bytes an id.
    int_ids: np.ndarray = field(default_factory=_no_ints)
    int_lines: np.ndarray = field(default_factory=_no_ints)
    seen: dict[str, int] = field(default_factory=dict)  # any other id -> first line


def flat_batches(
    source: FlatSource, model: ModelRef, *, with_features: bool = False, block_size: int = BLOCK_SIZE
) -> Iterator[Batch]:
    """Stream a records CSV block by block: type and check, then score."""
    invalid = InvalidRows()
    state = FlatState()
    # Blocks are scored in a worker thread (XGBoost releases the GIL) while the next ones are
    # read and checked here, up to READ_AHEAD_BYTES of CSV ahead: enough to keep reading while
    # the model loads, and a bound on memory.
    ahead = max(2, READ_AHEAD_BYTES // block_size)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
    pending: deque[tuple[CheckedBlock, Future[tuple[pd.DataFrame, float]]]] = deque()
    try:
        for block, read_seconds in read_blocks(source, block_size, invalid):
            checked = check_block(block, source, state, invalid)
            checked.timings["read"] = read_seconds
            pending.append((checked, pool.submit(_timed_scores, checked.valid, model)))
            while pending and (len(pending) >= ahead or pending[0][1].done()):
                yield scored_batch(*pending.popleft(), with_features=with_features)
        while pending:
            yield scored_batch(*pending.popleft(), with_features=with_features)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # bad input: what is queued is not scored
    leftover = invalid.take_new()
    if not leftover.empty:
        yield Batch(
            ids=np.array([], dtype=object),
            proba=np.array([], dtype=np.float64),
            label=np.array([], dtype=np.int8),
            outcome=None,
            features=None,
            rejects=leftover,
            input_rows=len(leftover),
            rejected_rows=len(leftover),
            file=source.file.name,
        )


def read_blocks(source: FlatSource, block_size: int, invalid: InvalidRows) -> Iterator[tuple[pa.RecordBatch, float]]:
    """The file's blocks, with the seconds each took to read.

    Arrow parses the numeric columns as it reads (a third of the cost of parsing text, then
    numbers). At the first block it cannot parse so, or where a cell was written "NaN" or
    "inf", the file is read again as text from that block on: check_records then tells which
    cells are wrong and why, exactly as for a file read as text throughout.
    """
    typed_blocks = 0
    with contextlib.suppress(InputError):  # the text reader says what is wrong
        for block, seconds in _blocks(open_records_csv(source, block_size, invalid, typed=True), source):
            if not _finite_numbers(block):
                break
            typed_blocks += 1
            yield block, seconds
        else:
            return
    text = _blocks(open_records_csv(source, block_size, invalid), source)
    for _ in range(typed_blocks):  # the same blocks as the typed reader's: same size, same splits
        next(text, None)
    yield from text


def _blocks(reader: pa_csv.CSVStreamingReader, source: FlatSource) -> Iterator[tuple[pa.RecordBatch, float]]:
    """A reader's blocks and the seconds each took to read."""
    while True:
        start = time.perf_counter()
        try:
            block = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read CSV ({exc})", file=source.file.name) from exc
        yield block, time.perf_counter() - start


def _finite_numbers(block: pa.RecordBatch) -> bool:
    """Whether every number of a typed block is finite (a cell written "NaN" or "inf" is not)."""
    return all(
        pc.all(pc.is_finite(column), min_count=0).as_py() is not False
        for column in block.columns
        if pa.types.is_float64(column.type)
    )


def _timed_scores(records: pd.DataFrame, model: ModelRef) -> tuple[pd.DataFrame, float]:
    loaded = ready(model)
    start = time.perf_counter()
    return score_records(records, loaded), time.perf_counter() - start


@dataclass
class CheckedBlock:
    """One block of a records CSV, typed and checked, before scoring."""

    valid: pd.DataFrame  # typed records of the rows that passed every check
    ids: np.ndarray  # of the valid rows
    outcome: np.ndarray | None  # of the valid rows
    rejects: pd.DataFrame
    input_rows: int
    rejected_rows: int
    file: str
    timings: dict[str, float]


def check_block(block: pa.RecordBatch, source: FlatSource, state: FlatState, invalid: InvalidRows) -> CheckedBlock:
    """Type and check one block of a records CSV: cells, ids, outcome, malformed lines."""
    start = time.perf_counter()
    lines = physical_lines(np.arange(state.rows_before, state.rows_before + block.num_rows), invalid.lines())
    state.rows_before += block.num_rows
    keep = ~blank_rows(block)
    if not keep.all():
        block = block.filter(pa.array(keep))
        lines = lines[keep]
    columns = {source.canonical[name]: block.column(name) for name in block.schema.names}
    frame = pd.DataFrame(
        {c: numeric_or_text(columns[c]) if c in _NUMERIC else columns[c].to_pandas() for c in RECORD_COLUMNS},
        copy=False,  # no consolidation into one 2-D block: check_records reads column by column
    )
    typed, cells = check_records(frame, first_line=0)
    ids, id_rejects = flat_ids(columns.get(ID_COLUMN), lines, state, source.header_of(ID_COLUMN) or ID_COLUMN)
    outcome, outcome_rejects = flat_outcome(columns.get(TARGET), lines, ids, source.header_of(TARGET) or TARGET)
    bad = np.zeros(len(frame), dtype=bool)
    bad[cells["line"].to_numpy()] = True
    for extra in (id_rejects, outcome_rejects):
        bad[np.searchsorted(lines, extra["line"].to_numpy())] = True
    malformed = invalid.take_new()
    rejects = _sorted_rejects(
        [flat_cell_rejects(cells, columns, ids, lines, source), id_rejects, outcome_rejects, malformed]
    )
    passed = ~bad[typed.index.to_numpy()]
    valid = typed if passed.all() else typed[passed]
    rows = valid.index.to_numpy()
    return CheckedBlock(
        valid=valid,
        ids=ids[rows],
        outcome=outcome[rows] if outcome is not None else None,
        rejects=rejects,
        input_rows=len(frame) + len(malformed),
        rejected_rows=int(bad.sum()) + len(malformed),
        file=source.file.name,
        timings={"check": time.perf_counter() - start},
    )


def scored_batch(
    checked: CheckedBlock, future: Future[tuple[pd.DataFrame, float]], *, with_features: bool = False
) -> Batch:
    """A checked block and its scores, once they are ready."""
    scores, seconds = future.result()
    return Batch(
        ids=checked.ids,
        proba=scores["proba"].to_numpy(),
        label=scores["label"].to_numpy(),
        outcome=checked.outcome,
        features=checked.valid.reset_index(drop=True) if with_features else None,
        rejects=checked.rejects,
        input_rows=checked.input_rows,
        rejected_rows=checked.rejected_rows,
        file=checked.file,
        timings={**checked.timings, "predict": seconds},
    )


def flat_cell_rejects(
    cells: pd.DataFrame, columns: Mapping[str, pa.ChunkedArray], ids: np.ndarray, lines: np.ndarray, source: FlatSource
) -> pd.DataFrame:
    """check_records' rejects with the id, the file line, the header name and the cell as written."""
    if cells.empty:
        return empty_rejects()
    pos = cells["line"].to_numpy()
    # Report the text that was read; a number Arrow parsed shows as written when whole ("9", not "9.0").
    value = [_as_written(columns[c][int(p)].as_py()) for c, p in zip(cells["column"], pos, strict=True)]
    header = [source.header_of(c) or c for c in cells["column"]]
    return _reject_frame(ids[pos].astype(str), lines[pos], header, value, cells["reason"].to_numpy())


def _as_written(value: Any) -> Any:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else value


def flat_ids(
    values: pa.ChunkedArray | None, lines: np.ndarray, state: FlatState, header: str = ID_COLUMN
) -> tuple[np.ndarray, pd.DataFrame]:
    """A block's ids (``Num_Acc`` as written, else the 1-based row number) and rejects for missing or repeated ones."""
    if values is None:
        return lines - 1, empty_rejects()
    text = pc.fill_null(pc.utf8_trim_whitespace(values), "")
    ids = text.to_numpy(zero_copy_only=False)
    missing = ~pc.greater(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    integer = pc.match_substring_regex(text, _INTEGER_ID).to_numpy(zero_copy_only=False)
    first = lines.copy()  # the line each row's id was first seen on
    if integer.any():
        pos = np.flatnonzero(integer)
        first[pos] = _first_lines(pc.cast(pc.filter(text, pa.array(integer)), pa.int64()).to_numpy(), lines[pos], state)
    for i in np.flatnonzero(~integer & ~missing):
        first[i] = state.seen.setdefault(ids[i], int(lines[i]))
    duplicate = first != lines
    rows = np.flatnonzero(missing | duplicate)
    reasons = ["missing id" if missing[i] else f"duplicate id: already on line {first[i]}" for i in rows]
    return ids, _reject_frame(ids[rows], lines[rows], header, ids[rows], reasons)


def _first_lines(keys: np.ndarray, lines: np.ndarray, state: FlatState) -> np.ndarray:
    """The line each integer id was first seen on (this block's line if new); records the new ones in ``state``."""
    unique, first_pos, inverse = np.unique(keys, return_index=True, return_inverse=True)
    at = np.searchsorted(state.int_ids, unique)
    known = at < len(state.int_ids)
    known[known] = state.int_ids[at[known]] == unique[known]
    first = lines[first_pos]
    first[known] = state.int_lines[at[known]]
    new = ~known
    state.int_ids = np.insert(state.int_ids, at[new], unique[new])
    state.int_lines = np.insert(state.int_lines, at[new], first[new])
    return first[inverse]


def flat_outcome(
    values: pa.ChunkedArray | None, lines: np.ndarray, ids: np.ndarray, header: str = TARGET
) -> tuple[np.ndarray | None, pd.DataFrame]:
    """The optional truth: 0 or 1, NaN when blank; any other value is rejected."""
    if values is None:
        return None, empty_rejects()
    # Arrow parses numbers as pd.to_numeric does, but fails on spaces, commas or text: those go the slow way.
    with contextlib.suppress(pa.ArrowInvalid):
        number = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        if not (~values.is_null().to_numpy(zero_copy_only=False) & ~np.isin(number, (0.0, 1.0))).any():
            return number, empty_rejects()
    text = pc.utf8_trim_whitespace(values).to_pandas()
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = text.notna().to_numpy() & ~np.isin(number, (0.0, 1.0))
    rejects = _reject_frame(ids[bad].astype(str), lines[bad], header, text[bad].to_numpy(), "outcome must be 0 or 1")
    return number, rejects


# ---------------------------------------------------------------------------
# tally, policy, summary


@dataclass
class Tally:
    """Running totals of a scoring run."""

    input_rows: int = 0
    rejected_rows: int = 0
    rejected_cells: int = 0
    predicted_severe: int = 0
    first_reject: dict[str, Any] | None = None
    proba: list[np.ndarray] = field(default_factory=list)
    outcome: list[np.ndarray] = field(default_factory=list)
    has_outcome: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, batch: Batch) -> None:
        """Count one batch."""
        self.input_rows += batch.input_rows
        self.rejected_rows += batch.rejected_rows
        self.rejected_cells += len(batch.rejects)
        self.predicted_severe += int(batch.label.sum())
        self.proba.append(batch.proba)
        self.has_outcome |= batch.outcome is not None
        self.outcome.append(batch.outcome if batch.outcome is not None else np.full(len(batch.proba), np.nan))
        for key, seconds in batch.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + seconds
        if len(batch.rejects) and self.first_reject is None:
            first = batch.rejects.iloc[0].to_dict()
            first["file"] = batch.files.get(str(first["column"]), batch.file)
            self.first_reject = first

    def scores(self) -> np.ndarray:
        """Every probability so far."""
        return np.concatenate(self.proba) if self.proba else np.array([], dtype=np.float64)

    def outcomes(self) -> np.ndarray:
        """The truth aligned with ``scores()`` (NaN when unknown)."""
        return np.concatenate(self.outcome) if self.outcome else np.array([], dtype=np.float64)


def check_policy(tally: Tally, max_reject_rate: float, source: Source) -> None:
    """Fail when the input has no rows, or more than ``max_reject_rate`` of its rows were rejected."""
    if tally.input_rows == 0:
        raise InputError("header but no data rows", file=source_name(source), rows=[2])
    rate = tally.rejected_rows / tally.input_rows
    if rate > max_reject_rate and tally.first_reject is not None:
        first = tally.first_reject
        value = f" {first['value']!r}:" if first["value"] not in ("", None) and not pd.isna(first["value"]) else ""
        raise InputError(
            f"{tally.rejected_rows} of {tally.input_rows} rows rejected ({rate:.2%} > --max-reject-rate "
            f"{max_reject_rate:.2%}); first:{value} {first['reason']}",
            file=first["file"],
            column=str(first["column"]) or None,
            rows=[int(first["line"])],
        )


def source_name(source: Source) -> str:
    """The input, named for messages."""
    if isinstance(source, FlatSource):
        return source.file.name
    return ", ".join(f.name for f in source.files)


def score_distribution(proba: np.ndarray) -> dict[str, Any]:
    """Mean, quantiles and a 10-bin histogram of the probabilities."""
    counts, edges = np.histogram(proba, bins=10, range=(0.0, 1.0))
    values = np.quantile(proba, QUANTILES) if len(proba) else [None] * len(QUANTILES)
    return {
        "mean": round(float(proba.mean()), 6) if len(proba) else None,
        "quantiles": {
            str(q): None if v is None else round(float(v), 6) for q, v in zip(QUANTILES, values, strict=True)
        },
        "histogram": {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]},
    }


def outcome_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Metrics and confusion matrix against the known outcomes, with ``evaluate``'s functions."""
    known = ~np.isnan(y)
    if not known.any():
        return None
    truth = y[known].astype(np.int64)
    return {
        "rows": int(known.sum()),
        "metrics": classification_metrics(truth, proba[known], threshold),
        "confusion": confusion(truth, proba[known], threshold),
    }


def input_files(source: Source) -> list[dict[str, Any]]:
    """The files read and the zips they came from, with size and SHA-256."""
    out = [{"path": f.name, "bytes": f.path.stat().st_size, "sha256": sha256_of(f.path)} for f in source.archives]
    if isinstance(source, FlatSource):
        out.append({"path": source.file.name, "bytes": source.size, "sha256": source.sha256})
    else:
        out += [{"path": f.name, "bytes": f.path.stat().st_size, "sha256": sha256_of(f.path)} for f in source.files]
    return out


def summarise(
    tally: Tally,
    source: Source,
    model: LoadedModel,
    scored_at: pd.Timestamp,
    max_reject_rate: float,
    total_seconds: float,
) -> dict[str, Any]:
    """The JSON summary of a run."""
    proba = tally.scores()
    timings = {k: round(v, 3) for k, v in sorted(tally.timings.items())}
    timings["total"] = round(total_seconds, 3)
    summary: dict[str, Any] = {
        "scored_at": scored_at.isoformat(),
        "input": {"kind": "raw" if isinstance(source, RawSource) else "flat", "files": input_files(source)},
        "counts": {
            "input_rows": tally.input_rows,
            "scored": len(proba),
            "rejected": tally.rejected_rows,
            "rejected_cells": tally.rejected_cells,
            "predicted_severe": tally.predicted_severe,
        },
        "reject_rate": round(tally.rejected_rows / tally.input_rows, 6) if tally.input_rows else None,
        "max_reject_rate": max_reject_rate,
        "scores": score_distribution(proba),
        "model": {**model.describe(), "source": model.source},
        "timings_s": timings,
    }
    if isinstance(source, FlatSource):
        summary["input"].update(separator=source.separator, encoding=source.encoding)
    if tally.has_outcome:
        summary["outcome"] = outcome_metrics(tally.outcomes(), proba, model.threshold)
    return summary


# ---------------------------------------------------------------------------
# outputs


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("us")


def output_frame(batch: Batch, model: LoadedModel, scored_at: pd.Timestamp) -> pd.DataFrame:
    """A batch's output rows: id, probability, label, threshold, model identity, time (+ record columns)."""
    index = pd.RangeIndex(len(batch.proba))
    identity = model.describe()
    frame = pd.DataFrame(
        {
            "id": batch.ids,
            "proba": np.asarray(batch.proba, dtype=np.float64),
            "label": np.asarray(batch.label, dtype=np.int8),
            "threshold": np.full(len(index), float(model.threshold)),
            "model_name": pd.Series(identity["name"], index=index, dtype="string"),
            "model_version": pd.Series(identity["version"], index=index, dtype="string"),
            "model_alias": pd.Series(identity["alias"], index=index, dtype="string"),
            "run_id": pd.Series(identity["run_id"], index=index, dtype="string"),
            "scored_at": pd.Series(scored_at, index=index, dtype="datetime64[us, UTC]"),
        },
        index=index,
    )
    if batch.features is not None:
        frame = pd.concat([frame, batch.features.set_axis(index)], axis=1)
    return frame


def output_schema(id_type: pa.DataType, with_features: bool) -> pa.Schema:
    """Arrow schema of the Parquet output."""
    fields = [
        pa.field("id", id_type),
        pa.field("proba", pa.float64()),
        pa.field("label", pa.int8()),
        pa.field("threshold", pa.float64()),
        *(pa.field(c, pa.string()) for c in MODEL_COLUMNS),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
    if with_features:
        kinds = {"int": pa.int32(), "code": pa.int32(), "float": pa.float64()}
        fields += [pa.field(spec.name, kinds.get(spec.kind, pa.string())) for spec in FIELDS.values()]
    return pa.schema(fields)


def sibling(output: Path, suffix: str) -> Path:
    """``scores.parquet`` -> ``scores.rejects.csv``."""
    return output.with_name(output.name.removesuffix(".parquet") + suffix)


class OutputFiles:
    """The three outputs, written to temporary files and renamed, Parquet last, only on success."""

    def __init__(self, output: Path, *, with_features: bool, id_type: pa.DataType) -> None:
        self.output = Path(output)
        self.schema = output_schema(id_type, with_features)
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._rejects: IO[str] | None = None
        self._summary: Path | None = None

    def __enter__(self) -> OutputFiles:
        if self.output.is_dir():
            raise InputError("output is a folder: give a file path such as scores.parquet", file=self.output)
        with contextlib.ExitStack() as stack:
            # Entered first, renamed last: the Parquet file appears only once the others are in place.
            parquet = stack.enter_context(atomic_path(self.output))
            rejects = stack.enter_context(atomic_path(sibling(self.output, ".rejects.csv")))
            self._summary = stack.enter_context(atomic_path(sibling(self.output, ".summary.json")))
            # Dictionary pages only for the columns that repeat one value: ids and scores are unique.
            constant = ["threshold", *MODEL_COLUMNS, "scored_at"]
            self._writer = stack.enter_context(pq.ParquetWriter(str(parquet), self.schema, use_dictionary=constant))
            self._rejects = stack.enter_context(rejects.open("w", encoding="utf-8", newline=""))
            self._rejects.write(",".join(REJECT_COLUMNS) + "\n")
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def write_scored(self, frame: pd.DataFrame) -> None:
        """Append scored rows, in row groups of at most ``ROW_GROUP_ROWS``."""
        assert self._writer is not None
        if len(frame):
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def write_rejects(self, rejects: pd.DataFrame) -> None:
        """Append rejects to the CSV."""
        assert self._rejects is not None
        if len(rejects):
            rejects[list(REJECT_COLUMNS)].to_csv(self._rejects, header=False, index=False)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """The summary JSON: sorted keys, indented."""
        assert self._summary is not None
        self._summary.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def score_to_files(
    paths: Sequence[Path],
    output: Path,
    model: ModelRef,
    *,
    with_features: bool = False,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    block_size: int = BLOCK_SIZE,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Score into ``output`` (+ rejects and summary) block by block, in bounded memory; returns the summary.

    ``timings`` (e.g. the model's loading time, filled in while this runs) go into the summary.
    """
    start = time.perf_counter()
    scored_at = _now()
    tally = Tally()
    with contextlib.ExitStack() as stack:
        source = resolve_inputs(paths, stack)
        flat_ids_given = isinstance(source, FlatSource) and source.header_of(ID_COLUMN) is not None
        out = stack.enter_context(
            OutputFiles(output, with_features=with_features, id_type=pa.string() if flat_ids_given else pa.int64())
        )
        progress = stack.enter_context(tqdm(unit=" rows", desc="scoring", disable=not sys.stderr.isatty(), leave=False))
        for batch in iter_batches(source, model, with_features=with_features, block_size=block_size):
            tally.add(batch)
            write_start = time.perf_counter()
            out.write_scored(output_frame(batch, ready(model), scored_at))
            out.write_rejects(batch.rejects)
            tally.timings["write"] = tally.timings.get("write", 0.0) + time.perf_counter() - write_start
            progress.update(batch.input_rows)
        check_policy(tally, max_reject_rate, source)
        tally.timings.update(timings or {})
        summary = summarise(tally, source, ready(model), scored_at, max_reject_rate, time.perf_counter() - start)
        out.write_summary(summary)
    return summary


if __name__ == "__main__":
    code = main()
    # Leave the interpreter's final garbage collection out: it walks every live object
    # (pandas, Arrow, XGBoost) and frees nothing the OS would not.
    gc.freeze()
    sys.exit(code)
