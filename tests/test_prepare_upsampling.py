"""prepare warns when --resolution enlarges most images, and names their native size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ganforge.data.prepare import prepare_dataset, upsampling_warning


def test_warning_names_the_native_size():
    assert "--resolution 32" in upsampling_warning([32] * 9 + [300], 64)
    assert "4x slower" in upsampling_warning([32] * 9 + [300], 64)
    assert upsampling_warning([64] * 5 + [16] * 4, 64) is None  # most are big enough
    assert upsampling_warning([], 64) is None


def test_a_small_enlargement_to_the_nearest_power_of_two_is_not_warned_about():
    assert upsampling_warning([28] * 10, 32) is None  # MNIST at 32 px: the usual choice
    assert upsampling_warning([100] * 10, 128) is None
    assert "--resolution 16" in upsampling_warning([20] * 10, 32)  # nearer 16 than 32
    assert "--resolution 32" in upsampling_warning([28] * 10, 64)
    assert "4x slower" in upsampling_warning([28] * 10, 64)


def test_prepare_warns_on_small_images_only(tmp_path, capsys):
    folder = tmp_path / "small"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    prepare_dataset(folder, tmp_path / "at64", resolution=64, workers=1, progress=False)
    assert "--resolution 32" in capsys.readouterr().err
    prepare_dataset(folder, tmp_path / "at32", resolution=32, workers=1, progress=False)
    assert "enlarges" not in capsys.readouterr().err
