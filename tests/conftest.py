"""Fixtures shared by the test files: a source folder and an output path inside pytest's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"
