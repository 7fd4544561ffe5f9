"""Cut small real extracts of the bundled BAAC files for the tests.

Rows are copied byte for byte (quotes, `" -1"`, decimal commas, non-breaking spaces, CRLF
or LF line ends and the trailing blank line are kept), for a fixed sample of accidents
plus accidents chosen for their quirks. Run from the repo root:

    python tests/data/make_extracts.py
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "data" / "bundled" / "baac"
DEST = Path(__file__).resolve().parent / "baac"
PER_YEAR = 400


def lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def key(line: bytes) -> bytes:
    return line.split(b";", 1)[0].strip(b'"')


def pick(year: int) -> set[bytes]:
    folder = SRC / str(year)
    carac = lines(next(folder.glob("ca*")))[1:]
    users = lines(next(folder.glob("usagers*")))[1:]
    lieux = lines(next(folder.glob("lieux*")))[1:]
    rng = random.Random(year)
    chosen = {key(line) for line in rng.sample([c for c in carac if c.strip()], PER_YEAR)}
    quirky = [
        next(key(c) for c in carac if b'"2A"' in c),
        next(key(c) for c in carac if b'"2B"' in c),
        next(key(c) for c in carac if b'" -' in c.split(b";")[-1]),  # negative longitude
        next(key(u) for u in users if b';"A";' in u),  # actp letter code
        next(key(u) for u in users if b';"B";' in u),
        next(key(line) for line in lieux if line.rstrip().endswith(b'"500"')),  # vma data-entry error
    ]
    if year == 2021:
        quirky.append(next(key(u) for u in users if u.split(b";")[5] == b'" -1"'))  # grav not recorded
    return chosen | set(quirky)


def main() -> None:
    for year in (2020, 2021):
        keep = pick(year)
        out = DEST / str(year)
        out.mkdir(parents=True, exist_ok=True)
        for src in sorted((SRC / str(year)).glob("*.csv.gz")):
            content = lines(src)
            body = [line for line in content[1:] if line.strip() and key(line) in keep]
            tail = [line for line in content[-1:] if not line.strip()]
            (out / src.name.removesuffix(".gz")).write_bytes(b"".join([content[0], *body, *tail]))


if __name__ == "__main__":
    main()
