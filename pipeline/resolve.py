"""An MLflow model URI -> the model's files in a local folder, and its identity in the registry.

The first half of ``pipeline.model.load_model``, the one loader of the API, ``register`` and
the batch job. It is a module of its own because it is the half that needs MLflow, whose
import (client and SQL store) costs about a second of CPU: the batch job calls ``resolve`` in
a child process (``pipeline.batch.loading``), on the other core, while it reads its input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model could not be found or read."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model's files on disk and where they came from."""

    folder: Path
    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None


def is_mlflow_uri(uri: str) -> bool:
    """Whether ``uri`` names a model in MLflow rather than a folder."""
    return uri.startswith(("models:/", "runs:/"))


def resolve(uri: str, tracking_uri: str | None = None, dst: Path | None = None) -> ResolvedModel:
    """Find ``models:/name@alias``, ``models:/name/version`` or ``runs:/...`` and download its files.

    The files go to ``dst`` when given, else to a new temporary folder.
    """
    if not is_mlflow_uri(uri):
        raise ModelLoadError(f"no model at {uri!r}: not a folder nor an MLflow URI")
    import mlflow
    from mlflow.exceptions import MlflowException

    # Explicit URIs, never mlflow.set_tracking_uri: that also rewrites MLFLOW_TRACKING_URI in
    # this process's environment, which would leak into every later load.
    tracking = tracking_uri or mlflow.get_tracking_uri()
    destination = str(dst) if dst is not None else None
    name = version = alias = None
    try:
        if uri.startswith("models:/"):
            client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
            ref = uri.removeprefix("models:/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            version = str(mv.version)
            source = client.get_model_version_download_uri(name, version)
        else:
            source = uri
        folder = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking, dst_path=destination)
    except MlflowException as exc:
        raise ModelLoadError(f"cannot load {uri}: {exc.message}") from exc
    except OSError as exc:  # the artifact store unreadable, the destination unwritable...
        raise ModelLoadError(f"cannot load {uri}: {exc}") from exc
    return ResolvedModel(Path(folder), uri, name, version, alias)
