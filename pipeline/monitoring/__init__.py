"""Monitoring of scoring runs: the training profile, drift against it, and run records in MLflow.

* ``profile``: ``build_profile`` (training time) -> ``Profile``, stored with the model;
* ``drift``: ``drift_report`` -> PSI and a chi-square test per field, a verdict;
* ``record``: ``scoring_run`` -> the record of one scoring (drift, scores, realized metrics);
* ``tracking``: ``log_scoring_run`` / ``list_scoring_runs`` / ``get_scoring_run`` in MLflow.

``tracking`` imports MLflow: import it from ``pipeline.monitoring.tracking`` where needed.
"""

from pipeline.monitoring.drift import DriftCounts, DriftReport, DriftThresholds, FieldDrift, drift_report
from pipeline.monitoring.profile import PROFILE_FILE, Profile, build_profile
from pipeline.monitoring.record import InputSummary, ModelRef, Realized, ScoringRun, fingerprint, scoring_run

__all__ = [
    "PROFILE_FILE",
    "DriftCounts",
    "DriftReport",
    "DriftThresholds",
    "FieldDrift",
    "InputSummary",
    "ModelRef",
    "Profile",
    "Realized",
    "ScoringRun",
    "build_profile",
    "drift_report",
    "fingerprint",
    "scoring_run",
]
