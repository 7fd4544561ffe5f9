"""An MLflow model URI -> the model's files in a local folder, and its identity in the registry.

The first half of ``pipeline.model.load_model``, the one loader of the API, ``register`` and
the batch job. It is a module of its own because it is the half that needs MLflow, whose
import (client and SQL store) costs about a second of CPU: the batch job runs it as a child
process (``python -m pipeline.resolve URI``), on the other core, while it reads its input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXIT_UNAVAILABLE = 3


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "folder": str(self.folder),
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedModel:
        """Inverse of ``to_dict``."""
        return cls(Path(data["folder"]), data["uri"], data.get("name"), data.get("version"), data.get("alias"))


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


def main(argv: Sequence[str] | None = None) -> int:
    """Resolve a URI; print the ``ResolvedModel`` as JSON, or ``{"error": ...}`` and exit 3."""
    from pipeline.cli import setup_logging

    parser = argparse.ArgumentParser(prog="python -m pipeline.resolve", description=main.__doc__)
    parser.add_argument("uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH")
    parser.add_argument("--tracking-uri", help="MLflow tracking and registry URI (default: MLflow's own)")
    parser.add_argument("--dst", type=Path, help="folder to download the model into (default: a new temporary one)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        resolved = resolve(args.uri, args.tracking_uri, args.dst)
    except ModelLoadError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return EXIT_UNAVAILABLE
    sys.stdout.write(json.dumps(resolved.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
