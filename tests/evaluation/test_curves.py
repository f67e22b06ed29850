"""`flowsteer plot`: curves read back exactly from real TensorBoard event files, drawn to a PNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.evaluation.curves import plot_curves, read_curves

REPO = Path(__file__).resolve().parents[2]


def _write_run(root: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(str(root / "version_0"))
    for step in range(4):
        first.add_scalar("rollout/reward/total", -1.0 + 0.25 * step, step)
        first.add_scalar("train/loss", 1.0 / (step + 1), step)
        first.add_scalar("time/rollout_s", 3.0, step)
    first.close()
    resumed = SummaryWriter(str(root / "version_1"))  # a resume continues at step 3
    for step in (3, 4, 5):
        resumed.add_scalar("rollout/reward/total", 0.5 + step, step)
    resumed.close()


def test_curves_read_back_exactly_per_event_directory(tmp_path):
    _write_run(tmp_path)
    curves = read_curves(tmp_path, ("rollout/reward/total", "train/loss"))
    got = {(c.run, c.tag): (c.steps, c.values) for c in curves}
    assert got == {
        ("version_0", "rollout/reward/total"): ((0, 1, 2, 3), (-1.0, -0.75, -0.5, -0.25)),
        ("version_1", "rollout/reward/total"): ((3, 4, 5), (3.5, 4.5, 5.5)),
        ("version_0", "train/loss"): ((0, 1, 2, 3), pytest.approx((1.0, 0.5, 1 / 3, 0.25))),
    }


def test_plot_writes_a_png_through_the_cli(tmp_path):
    import matplotlib.image as mpimg

    _write_run(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "lightning_modules.cli", "plot", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    png = tmp_path / "curves.png"
    assert str(png) in out.stdout
    image = mpimg.imread(png)
    assert image.shape[0] > 100 and image[..., :3].std() > 0.05


def test_unknown_tags_name_what_was_logged(tmp_path):
    _write_run(tmp_path)
    with pytest.raises(ValueError, match=r"none of \['val/x'\] was logged.*rollout/reward/total"):
        plot_curves(tmp_path, tags=("val/x",))


def test_a_directory_without_event_files_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lightning_modules.cli", "plot", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"flowsteer plot: error: {tmp_path}: no TensorBoard event files (events.out.tfevents.*) under it"
    ]
