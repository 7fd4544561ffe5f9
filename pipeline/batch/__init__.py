"""Batch scoring: raw BAAC files or flat accident records -> probabilities in Parquet.

One orchestrator, ``pipeline.batch.run.score_to_files``, called by the command line
(``python -m pipeline.score``, ``pipeline.batch.cli``), the DVC ``score`` stage and the API's
file scoring. Its parts, one concern each:

* ``inputs``: what the paths hold (folder, zip, gzip, raw tables or one records CSV, encoding);
* ``limits``: the bounds on expanded bytes and rows, counted while reading;
* ``raw``: the four raw tables of one year, read whole and scored;
* ``flat``: a records CSV, streamed block by block (``flat_checks`` types and checks a block);
* ``batches``: a scored block and its rejects;
* ``summary``: running counts, the reject policy and the JSON summary;
* ``outputs``: the Parquet, rejects CSV and summary, published together;
* ``loading``: the model, loaded while the input is read.
"""
