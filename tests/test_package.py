"""The package's rooms: few loose modules at its root, and no test tool shipped in it."""

from __future__ import annotations

from support import ROOT

PACKAGE = ROOT / "monet"


def test_at_most_five_modules_at_the_package_root():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py", "images.py"]


def test_the_package_imports_no_benchmark_or_test_tool():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "from syncs import" not in text and "import pytest" not in text, path
        assert "count_syncs" not in text, path
