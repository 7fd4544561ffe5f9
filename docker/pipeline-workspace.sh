#!/bin/sh
# Entry point of the pipeline image: `dvc repro` (or any command) in a DVC workspace that
# outlives the container.
#
# The workspace, /workspace, is a volume: dvc.lock, every output (cached or not: DVC keeps no
# run cache for a stage with a `cache: false` output, so the run cache alone cannot restore
# validate and evaluate) and DVC's cache stay there between runs, so a second `dvc repro` with
# the same image finds everything up to date and trains and registers nothing. What the image
# defines (code, parameters, bundled data, the DVC config) replaces the workspace's copy at
# every start, so a new image's changes are exactly what DVC sees as changed deps.
set -eu
image=/app
cd /workspace
for path in dvc.yaml params.yaml pipeline data/bundled .dvc/config .dvc/config.local; do
  rm -rf "./$path"
  mkdir -p "$(dirname "./$path")"
  cp -a "$image/$path" "./$path"
done
# The image's dvc.lock only seeds a new workspace; from then on the workspace's own lock
# describes its outputs.
[ -e dvc.lock ] || cp -a "$image/dvc.lock" dvc.lock
exec "$@"
