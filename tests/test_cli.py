"""The command line: the demo, inspect, and user errors as one sentence."""

from __future__ import annotations

import numpy as np
import pytest
from awkward import images, with_one_good_image, write
from PIL import Image

from ganforge.cli import main


def test_demo_prepares_trains_exports_and_draws(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--resolution", "16", "--kimg", "0.128"]) == 0
    out = capsys.readouterr().out
    sheet = tmp_path / "demo" / "digits-16" / "contact-sheet.png"
    samples = tmp_path / "demo" / "samples-by-digit.png"
    assert "1,797 images" in out and str(sheet) in out and str(samples) in out
    runs = [p for p in (tmp_path / "demo" / "runs").iterdir() if not p.name.startswith(".")]  # .lock: numbering
    assert len(runs) == 1 and (runs[0] / "progress.gif").exists() and (runs[0] / "losses.png").exists()
    assert (runs[0] / "generator" / "model.safetensors").exists()
    with Image.open(samples) as image:
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


# --- the command line ----------------------------------------------------------------------------


def test_cli_prepare_prints_the_summary(src, out, capsys):
    with_one_good_image(src)
    write(src / "notes.txt", b"not a picture\n")
    code = main(["prepare", str(src), str(out), "--resolution", "8", "--workers", "1", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"Prepared 1 image into {out}" in captured.out
    assert "not an image" in captured.out and "prepare-report.json" in captured.out
    assert images(out).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("args, message", [
    (["--quiet"], "--resolution is required"),
    (["--resolution", "8", "--background", "nope"], "is not a colour"),
])
def test_cli_user_error_is_one_line_and_exit_code_2(src, out, capsys, args, message):
    with_one_good_image(src)
    code = main(["prepare", str(src), str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ganforge: error: ") and message in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("source, message", [
    ("no-such-folder", "not found"),
    ("page.zip", "not a zip or tar archive"),
])
def test_cli_unusable_source_is_a_user_error(tmp_path, capsys, source, message):
    write(tmp_path / "page.zip", b"<html>403 Forbidden</html>")
    code = main(["prepare", str(tmp_path / source), str(tmp_path / "out"), "-r", "8", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()
