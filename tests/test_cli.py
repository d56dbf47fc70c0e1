"""The command line: the demo, inspect, and user errors as one sentence."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ganforge.cli import main


def test_demo_prepares_the_builtin_digits_and_draws_them(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--resolution", "16"]) == 0
    out = capsys.readouterr().out
    sheet = tmp_path / "demo" / "digits-16" / "contact-sheet.png"
    assert "1,797 images" in out and str(sheet) in out
    with Image.open(sheet) as image:
        assert image.width > 200 and image.height > 200


def test_inspect_lists_classes_and_writes_the_sheet_where_asked(tmp_path, capsys):
    assert main(["prepare", "digits", str(tmp_path / "d"), "-r", "16", "-q", "--workers", "1"]) == 0
    target = tmp_path / "sheets" / "digits.png"
    assert main(["inspect", str(tmp_path / "d"), "--out", str(target), "--count", "20"]) == 0
    out = capsys.readouterr().out
    assert "10 classes" in out and target.exists()


def test_inspect_of_an_unlabelled_point_set_draws_a_scatter(tmp_path, capsys):
    assert main(["prepare", "grid25", str(tmp_path / "g"), "--count", "2000", "-q"]) == 0
    assert main(["inspect", str(tmp_path / "g")]) == 0
    assert "25 modes" in capsys.readouterr().out
    with Image.open(tmp_path / "g" / "contact-sheet.png") as image:
        dark = int((np.asarray(image.convert("L")) < 128).sum())
    assert dark > 100  # points were drawn


def test_user_errors_are_one_sentence_and_exit_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganforge: error:") and "Traceback" not in err
    assert main(["prepare", "digits", str(tmp_path / "x")]) == 2
    assert "--resolution is required" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for command in ("demo", "prepare", "inspect"):
        try:
            main([command, "--help"])
        except SystemExit as stop:
            assert stop.code == 0
        assert "usage: ganforge " + command in capsys.readouterr().out
