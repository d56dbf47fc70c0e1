"""Fixtures shared by the test files: a temporary GANFORGE_HOME for the whole session, a source folder and
an output path inside pytest's tmp_path, and the built-in digits prepared at 16 px (once per test module),
plain or with two attributes per image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ganforge.data.prepare import prepare_dataset


@pytest.fixture(autouse=True, scope="session")
def ganforge_home(tmp_path_factory) -> Path:
    """Keys and the model register go to a temporary GANFORGE_HOME, never the developer's ~/.ganforge
    (set in the environment, so the CLI subprocesses that tests start inherit it)."""
    home = tmp_path_factory.mktemp("ganforge-home")
    previous = os.environ.get("GANFORGE_HOME")
    os.environ["GANFORGE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("GANFORGE_HOME", None)
    else:
        os.environ["GANFORGE_HOME"] = previous


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models want one thread: two threads sharing a busy 2-core CPU spin-wait and run ~15x slower.
    A test module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture(scope="module")
def digits_attr(tmp_path_factory) -> Path:
    """The built-in digits at 16 px with two attributes per image (by six-digit index): ink and parity."""
    from ganforge.data.builtin import load_digits

    folder = tmp_path_factory.mktemp("attr")
    digits = load_digits()
    ink = digits.images.reshape(len(digits.images), -1).mean(1)
    table = folder / "digits.csv"
    table.write_text("file,ink,parity\n" + "".join(
        f"{i:06d},{ink[i]:.3f},{'odd' if digits.labels[i] % 2 else 'even'}\n" for i in range(len(ink))))
    out = folder / "digits-attr"
    prepare_dataset("digits", out, resolution=16, workers=1, progress=False, attributes=str(table))
    return out
