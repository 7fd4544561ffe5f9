"""Stage ``ingest``: fetch each year's four BAAC tables (bundled copy or data.gouv.fr),
read and type them (``pipeline.raw_tables``) and write them as Parquet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import BUNDLED_DIR, CACHE_DIR, INTERIM_DIR, params
from pipeline.errors import InputError
from pipeline.raw_tables import find_tables, read_year
from pipeline.storage import write_parquet_atomic

log = logging.getLogger(__name__)

# Stable data.gouv.fr resource links, and the official sizes/sha1 where known.
DATAGOUV_URLS: Mapping[int, Mapping[str, str]] = {
    2019: {
        "caracteristiques": "e22ba475-45a3-46ac-a0f7-9ca9ed1e283a",
        "lieux": "2ad65965-36a1-4452-9c08-61a6c874e3e6",
        "usagers": "36b1b7b3-84b4-4901-9163-59ae8a9e3028",
        "vehicules": "780cd335-5048-4bd6-a841-105b44eb2667",
    },
    2020: {
        "caracteristiques": "07a88205-83c1-4123-a993-cba5331e8ae0",
        "lieux": "e85c41f7-d4ea-4faf-877f-ab69a620ce21",
        "usagers": "78c45763-d170-4d51-a881-e3147802d7ee",
        "vehicules": "a66be22f-c346-49af-b196-71df24702250",
    },
    2021: {
        "caracteristiques": "85cfdc0c-23e4-4674-9bcd-79a970d7269b",
        "lieux": "8a4935aa-38cd-43af-bf10-0209d6d17434",
        "usagers": "ba5a1956-7e82-41b7-a602-89d7dd484d7a",
        "vehicules": "0bb5953a-25d8-46f8-8c25-b5c2f5ba905e",
    },
    2022: {
        "caracteristiques": "5fc299c0-4598-4c29-b74c-6a67b0cc27e7",
        "lieux": "a6ef711a-1f03-44cb-921a-0ce8ec975995",
        "usagers": "62c20524-d442-46f5-bfd8-982c59763ec8",
        "vehicules": "c9742921-4427-41e5-81bc-f13af8bc31a0",
    },
    2023: {
        "caracteristiques": "104dbb32-704f-4e99-a71e-43563cb604f2",
        "lieux": "8bef19bf-a5e4-46b3-b5f9-a145da4686bc",
        "usagers": "68848e2a-28dd-4efc-9d5f-d512f7dbe66f",
        "vehicules": "146a42f5-19f0-4b3e-a887-5cd8fbef057b",
    },
    2024: {
        "caracteristiques": "83f0fb0e-e0ef-47fe-93dd-9aaee851674a",
        "lieux": "228b3cda-fdfb-4677-bd54-ab2107028d2d",
        "usagers": "f57b1f58-386d-4048-8f78-2ebe435df868",
        "vehicules": "fd30513c-6b11-4a56-b6dc-5ac87728794b",
    },
}
DATAGOUV_BASE = "https://www.data.gouv.fr/fr/datasets/r/"
DATAGOUV_SHA1: Mapping[tuple[int, str], str] = {
    (2019, "caracteristiques"): "c1008e98ae4d6433cc79b16a5dbf95ffed116d55",
    (2019, "lieux"): "bab1d2f6a2799a24fd59bbc29b2bae4d6783a81a",
    (2019, "usagers"): "8fba99e9246ee57454e726013ec4f1895831f6c3",
    (2019, "vehicules"): "2841608bf5e40943578570edd53f31357d46a975",
    (2020, "caracteristiques"): "aecac31214d34667a7a2c8ab179fbd25d1fe0794",
    (2020, "lieux"): "73a8a21443641b919e8af2489e27dca714f60daa",
    (2020, "usagers"): "2c99198f42ade793dac840cad965a563f984988c",
    (2020, "vehicules"): "1dff8742e6af1d06a9e288d5abedaeaa859cb6d1",
    (2022, "usagers"): "df4761c5df6837b109ce80d73014a78800871b9e",
}


def download(url: str, dest: Path, sha1: str | None = None, timeout: float = 60.0, retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` (pooch: atomic, retried), checking sha1 when known; reuse a valid cache."""
    # Imported here: the bundled source, the default, never downloads.
    import pooch
    import requests

    fetcher = pooch.create(
        path=dest.parent,
        base_url="",
        registry={dest.name: f"sha1:{sha1}" if sha1 else None},
        urls={dest.name: url},
        retry_if_failed=retries,
    )
    try:
        return Path(fetcher.fetch(dest.name, downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False)))
    except ValueError as exc:  # pooch's hash mismatch; the partial download is already removed
        raise InputError(f"checksum mismatch: {exc}", file=url) from exc
    except (OSError, requests.RequestException) as exc:
        raise InputError(f"download failed after {retries} retries: {exc}", file=url) from exc


def datagouv_files(year: int, cache: Path = CACHE_DIR, base_url: str = DATAGOUV_BASE) -> list[Path]:
    """Download (or reuse from the cache) the four official files of ``year``."""
    if year not in DATAGOUV_URLS:
        raise InputError(f"no known data.gouv.fr resources for year {year}", file=base_url)
    out = []
    for table, uuid in DATAGOUV_URLS[year].items():
        dest = cache / str(year) / f"{table}-{year}.csv"
        out.append(download(base_url + uuid, dest, DATAGOUV_SHA1.get((year, table))))
    return out


def source_files(year: int, source: str, bundled: Path | None = None) -> list[Path]:
    """The raw files for a year, from the bundled copy (``BUNDLED_DIR`` by default) or data.gouv.fr."""
    if source == "bundled":
        folder = (bundled or BUNDLED_DIR) / str(year)
        if not folder.is_dir():
            raise InputError(f"no bundled data for year {year}", file=folder)
        return [folder]
    return datagouv_files(year)


def ingest_year(year: int, source: str, out_dir: Path) -> dict[str, int]:
    """Read one year's raw tables and write them as typed Parquet; returns row counts."""
    files = find_tables(source_files(year, source))
    tables = read_year(files)
    counts = {}
    for table, frame in tables.items():
        write_parquet_atomic(frame, out_dir / str(year) / f"{table}.parquet")
        counts[table] = len(frame)
    return counts


def main() -> None:
    """DVC entry point: ingest every year in params.yaml."""
    p = params().ingest
    for year in p.years:
        counts = ingest_year(year, p.source, INTERIM_DIR)
        log.info("ingested %s: %s", year, counts)


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
