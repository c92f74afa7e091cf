"""Imports point one way: the product never imports the development tooling or benchmarks, the
telephony layers never import the dialog, and `media` (clock, PCM) depends on nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("audiosocket", "ari_app", "models", "db", "media", "phoneagent", "devtools", "bench", "tests")
# package -> the packages of ours it may import
ALLOWED = {
    "media": set(),
    "audiosocket": {"media"},
    "ari_app": {"media", "audiosocket"},
    "models": {"media"},
    "db": set(),
    "phoneagent": {"media", "audiosocket", "ari_app", "models", "db"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {m for m in found if m in OURS}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = _imports(path) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"


def test_dialog_files_stay_small() -> None:
    big = {p.name: n for p in (ROOT / "phoneagent" / "dialog").rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not big, big
