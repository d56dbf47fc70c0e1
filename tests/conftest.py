"""Fixtures shared by the test files: a source folder and an output path inside pytest's tmp_path, and the
built-in digits prepared at 16 px (once per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganforge.data.prepare import prepare_dataset


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "digits-16"
    prepare_dataset("digits", out, resolution=16, workers=1, progress=False)
    return out
