"""Speed benchmarks: ``python -m benchmarks`` (``make bench``) runs every module's ``run()``.

Each benchmark prints its numbers next to a baseline measured in the same run, so that the
ratios stay meaningful on a slower or busier machine. Timings are never asserted in tests.
"""
