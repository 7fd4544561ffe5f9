"""dvc.yaml lists, under each stage's deps, its module and every project module it imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def source(module: str) -> Path:
    """The file of a project module (``pipeline.x`` -> pipeline/x.py)."""
    return ROOT / (module.replace(".", "/") + ".py")


def project_imports(module: str) -> set[str]:
    """``module`` and every ``pipeline`` module it imports, at the top or inside functions, transitively."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(source(name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            pending += [
                n for n in names if n.startswith("pipeline.") and (ROOT / (n.replace(".", "/") + ".py")).exists()
            ]
    return seen


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_deps_list_the_modules_it_runs(stage: str) -> None:
    spec = STAGES[stage]
    module = spec["cmd"].split("python -m ", 1)[1].split()[0]
    expected = {str(source(name).relative_to(ROOT)) for name in project_imports(module)}
    listed = {dep for dep in spec["deps"] if dep.startswith("pipeline/")}
    assert listed == expected, f"missing {sorted(expected - listed)}, not imported {sorted(listed - expected)}"
