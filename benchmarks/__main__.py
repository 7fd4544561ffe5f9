"""Run the benchmarks: every ``benchmarks.<name>`` module with a ``run()``, or those named.

python -m benchmarks            # all of them (make bench)
python -m benchmarks score api  # only these
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence

import benchmarks


def names() -> list[str]:
    """Benchmark modules of the package, in alphabetical order."""
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def main(argv: Sequence[str]) -> int:
    """Import each benchmark module and call its ``run()``; returns the exit code."""
    available = names()
    chosen = list(argv) or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        if not hasattr(module, "run"):
            continue
        print(f"== benchmarks.{name}", flush=True)
        start = time.perf_counter()
        module.run()
        print(f"== benchmarks.{name}: {time.perf_counter() - start:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
