"""Batch scoring entry point: ``python -m pipeline.score INPUT... --output OUT.parquet``.

The DVC ``score`` stage runs it too, with the year's paths on its command line. The work is
done by the ``pipeline.batch`` package; see ``pipeline.batch.cli`` for the arguments.
"""

from __future__ import annotations

import gc
import sys

if __name__ == "__main__":
    # Imported here, not at the top: the model lookup's child process re-imports this module
    # (as ``__mp_main__``) and needs none of the job's libraries.
    from pipeline.batch.cli import main

    code = main()
    # Leave the interpreter's final garbage collection out: it walks every live object
    # (pandas, Arrow, XGBoost) and frees nothing the OS would not.
    gc.freeze()
    sys.exit(code)
