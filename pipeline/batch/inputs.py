"""What the input paths hold: the four raw tables of one year, or one flat CSV of accident records.

Folders are listed, zips extracted (safely, counted against the limits), gzip told by its
magic bytes; a records file is told by its header, a raw table by its name (``pipeline.raw_tables``).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import errno
import gzip
import logging
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from pipeline.batch.limits import DEFAULT_LIMITS, MAX_ZIP_MEMBERS, ByteBudget, Limits, clipped
from pipeline.batch.stop import check_stop
from pipeline.codebook import SCHEMA
from pipeline.errors import InputError
from pipeline.raw_tables import identify
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET
from pipeline.storage import sha256_of

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
MAX_HEADER_BYTES = 64 << 10  # a records header is ~1 KB; csv's field limit is 128 KB
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # in no text header (tab, CR, LF aside)
ID_ALIASES: Mapping[str, str] = {"num_acc": ID_COLUMN, "accident_id": ID_COLUMN, TARGET: TARGET}
# Record fields that no raw table has: a header holding most of them is a flat records file.
_RAW_COLUMNS = frozenset(c.lower() for table in SCHEMA.values() for c in table)
_RECORD_ONLY = frozenset(c for c in RECORD_COLUMNS if c.lower() not in _RAW_COLUMNS)


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
    digest: Future[str]  # the file's SHA-256, computed in a thread while the run reads the file
    size: int
    encoding: str  # "utf-8", or "latin-1" when the bytes are not UTF-8
    archives: tuple[InputFile, ...] = ()

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (waits for the thread computing it)."""
        return self.digest.result()

    def header_of(self, column: str) -> str | None:
        """The header name of a record column, Num_Acc or severe, if the file has it."""
        return next((h for h, c in self.canonical.items() if c == column), None)


Source = RawSource | FlatSource


def resolve_inputs(paths: Sequence[Path], stack: contextlib.ExitStack, limits: Limits = DEFAULT_LIMITS) -> Source:
    """Tell raw tables from a flat records file by their headers; zips are extracted into ``stack``'s temp dir.

    Every byte the run will decompress is counted against ``limits.max_expanded_bytes`` here,
    before anything is parsed.
    """
    if not paths:
        raise InputError("no input given")
    files: list[InputFile] = []
    archives: list[InputFile] = []
    extracted = ByteBudget(limits.max_expanded_bytes)
    for path in map(Path, paths):
        if not path.exists():
            raise InputError("no such file or folder", file=path)
        if path.is_dir():
            files.extend(InputFile(f, str(f)) for f in sorted(path.iterdir()) if not f.name.startswith("."))
            continue
        regular_file(path)
        if path.suffix.lower() == ".zip":
            archives.append(InputFile(path, str(path)))
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="score-zip-")))
            files.extend(extract_zip(path, folder, extracted))
        else:
            files.append(InputFile(path, str(path)))
    for file in files:
        regular_file(file.path, file.name)
    if not files:
        raise InputError("no files found", file=", ".join(str(p) for p in paths))
    text = ByteBudget(limits.max_expanded_bytes)
    flat = [f for f in files if classify(f) == "flat"]
    if not flat:
        for file in files:
            count_text(file, text)
        return RawSource(tuple(files), tuple(archives))
    if len(files) > 1:
        other = next(f for f in files if f is not flat[0])
        raise InputError(
            f"give one records file, or the four raw tables, not both (also got {other.name})", file=flat[0].name
        )
    return flat_source(flat[0], tuple(archives), text)


def regular_file(path: Path, name: str | None = None) -> None:
    """Refuse what is not a regular file: a FIFO would block forever, a device never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=name or path) from exc
    if not stat.S_ISREG(mode):
        raise InputError("not a regular file (a folder, FIFO, device or socket)", file=name or path)


def extract_zip(archive: Path, folder: Path, budget: ByteBudget) -> list[InputFile]:
    """Extract the CSVs of a zip safely (no absolute paths, ``..`` or links); any other file is an error.

    The bytes written are counted as they are written: a member's declared size is not trusted.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable zip archive ({exc})", file=archive) from exc
    out: list[InputFile] = []
    with zf:
        members = zf.infolist()
        files = sum(not m.is_dir() for m in members)
        if files > MAX_ZIP_MEMBERS:  # refused before anything is written: 10,000 tiny files cost minutes
            raise InputError(
                f"zip archive holds {files:,} files: expected the four BAAC tables or one records CSV "
                f"(at most {MAX_ZIP_MEMBERS} files)",
                file=archive,
            )
        if not files:
            raise InputError("zip archive is empty", file=archive)
        for member in members:
            if member.is_dir():
                continue
            inner = PurePosixPath(member.filename)
            name = f"{archive}:{clipped(member.filename, 200)}"  # a member's name may be 64 KB
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
            # One folder per member, named by its rank: the member's own folders stay out of the file system.
            dest = folder / str(len(out)) / inner.name
            dest.parent.mkdir()
            try:
                with zf.open(member) as src, dest.open("wb") as dst:
                    for chunk in iter(lambda: src.read(READ_CHUNK), b""):
                        check_stop()
                        budget.add(len(chunk), name)
                        dst.write(chunk)
            # zipfile raises RuntimeError for encrypted members, NotImplementedError for odd compressions.
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
                raise InputError(f"cannot extract from zip archive ({exc})", file=name) from exc
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk is reported as what it is
                    raise OSError(exc.errno, f"no space left in TMPDIR ({folder.parent}) to extract {name}") from exc
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                raise InputError("file name too long in zip archive", file=name) from exc
            out.append(InputFile(dest, name))
    return out


def is_gzip(path: Path) -> bool:
    """Whether the file starts with gzip's magic bytes."""
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


@contextlib.contextmanager
def open_data(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzipped."""
    if is_gzip(path):
        with gzip.open(path, "rb") as gz:
            yield cast(IO[bytes], gz)
    else:
        with path.open("rb") as fh:
            yield fh


def read_header(file: InputFile) -> tuple[list[str], str]:
    """The header's fields and the separator that splits it into the most fields (';', ',', tab or '|')."""
    try:
        with open_data(file.path) as fh:
            head = fh.readline(MAX_HEADER_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read file ({exc})", file=file.name) from exc
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise InputError(
            "a zip archive, not a CSV: give it a .zip name (zips inside zips are not read)", file=file.name
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError("UTF-16 text: save the CSV as UTF-8 (or latin-1)", file=file.name, rows=[1])
    line = re.split(rb"[\r\n]", head, maxsplit=1)[0]  # "\r" alone ends a line too (old Mac files)
    if _CONTROL.search(line[:MAX_HEADER_BYTES]):
        raise InputError(
            "binary content, not a CSV text file (renamed, or compressed other than gzip?)", file=file.name
        )
    if len(line) > MAX_HEADER_BYTES:
        raise InputError(
            f"first line longer than {MAX_HEADER_BYTES >> 10} KB: not a CSV header (a binary file, or no line breaks?)",
            file=file.name,
            rows=[1],
        )
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
        shown = ", ".join(map(clipped, fields[:6])) + (", ..." if len(fields) > 6 else "")
        raise InputError(
            f"neither a raw BAAC table (by its name) nor a records file (by its header: {shown})",
            file=file.name,
            rows=[1],
        ) from None
    return "raw"


def flat_source(file: InputFile, archives: tuple[InputFile, ...] = (), budget: ByteBudget | None = None) -> FlatSource:
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
            raise InputError("duplicate column", file=file.name, column=clipped(name), rows=[1])
        canonical[name] = column
    missing = [c for c in RECORD_COLUMNS if c not in canonical.values()]
    if missing:
        close = difflib.get_close_matches(missing[0], [f for f in fields if f not in canonical], n=1)
        hint = f"; found {clipped(close[0])!r} instead (renamed?)" if close else ""
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"missing column{more}{hint}", file=file.name, column=missing[0], rows=[1])
    extra = [f for f in fields if f not in canonical]
    if extra:
        log.info("%s: ignoring columns %s", file.name, extra)
    encoding = count_text(file, budget or ByteBudget(None))
    if encoding != "utf-8":
        log.info("%s is not UTF-8: reading it as latin-1", file.name)
    size = file.path.stat().st_size
    return FlatSource(file, sep, tuple(fields), canonical, background_sha256(file.path), size, encoding, archives)


def background_sha256(path: Path) -> Future[str]:
    """A file's SHA-256, computed in a thread: hashlib and file reads release the GIL, so hashing
    a large file overlaps the run's reading of it instead of delaying its start."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    digest = pool.submit(sha256_of, path)
    pool.shutdown(wait=False)  # the thread ends once the digest is done
    return digest


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


def count_text(file: InputFile, budget: ByteBudget) -> str:
    """Read the file's text bytes (gunzipped) once, counting them against ``budget``; returns its encoding.

    The encoding is "utf-8" when every byte decodes so, else "latin-1" (any byte is latin-1).
    """
    check = Utf8Check()
    try:
        with open_data(file.path) as fh:
            for block in iter(lambda: fh.read(READ_CHUNK << 2), b""):
                check_stop()
                budget.add(len(block), file.name)
                check.feed(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read file ({exc})", file=file.name) from exc
    check.feed(b"", final=True)
    return "utf-8" if check.valid else "latin-1"


def source_name(source: Source) -> str:
    """The input, named for messages."""
    if isinstance(source, FlatSource):
        return source.file.name
    return ", ".join(f.name for f in source.files)


def input_files(source: Source) -> list[dict[str, Any]]:
    """The files read and the zips they came from, with size and SHA-256."""
    out = [{"path": f.name, "bytes": f.path.stat().st_size, "sha256": sha256_of(f.path)} for f in source.archives]
    if isinstance(source, FlatSource):
        out.append({"path": source.file.name, "bytes": source.size, "sha256": source.sha256})
    else:
        out += [{"path": f.name, "bytes": f.path.stat().st_size, "sha256": sha256_of(f.path)} for f in source.files]
    return out
