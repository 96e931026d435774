"""``fumd plot``: every figure rendered from a real daemon's checkpoint and history (issue #5)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tests.daemon_harness import drop, fumd_cmd, labelled_files, run_to_idle, write_config

JOBS = ("clustering", "decay", "persistence", "tuning", "structural", "criticality")
FIGURES = ("raster.png", "weights.png", "cluster_rates.png", "reward.png", "cluster_graph.png", "avalanches.png")


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plots")
    extra = "".join(f"\n[jobs.{name}]\nenabled = true\nevery_cycles = {every}\n"
                    for name, every in zip(JOBS, (40, 25, 30, 20, 35, 15), strict=True))
    cfg = write_config(tmp / "fumd.toml", every_cycles=100, extra=extra)
    state = tmp / "state"
    drop(labelled_files(tmp / "src", 4, 50, seed=4), state / "inbox")
    run_to_idle(state, cfg)
    return state


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    img = imread(path)  # decodes the whole file: a truncated PNG raises
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 400, (path, img.shape)
    rgb = img[..., :3].reshape(-1, 3)
    background = np.all(rgb > 0.97, axis=1)
    assert 0.02 < 1.0 - background.mean() < 0.95, f"{path.name}: {1 - background.mean():.3f} of the pixels drawn"
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) >= 8, f"{path.name}: too few colours"
    colourful = np.ptp(rgb, axis=1) > 0.2  # not only greys: data is drawn in colour
    assert colourful.mean() > 0.0005, path.name


def test_make_plots_renders_every_figure_from_a_real_state_dir(state_dir: Path, tmp_path: Path) -> None:
    from fumd.ops.plots import avalanche_sizes, cluster_weights, make_plots
    from fumd.persistence.checkpoint import load_latest

    paths = make_plots(state_dir, tmp_path / "out")
    assert [p.name for p in paths] == list(FIGURES)
    for path in paths:
        _check_png(path)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left
    state = load_latest(state_dir / "checkpoints").state
    summed, sizes, k = cluster_weights(state)
    assert summed.shape == (k, k) and sizes.sum() == state["network.cluster"].numel()
    assert np.isclose(summed.sum(), float(state["network.w"].double().sum()))
    sizes_ring = avalanche_sizes(state)
    assert sizes_ring.size == min(int(state["jobs.criticality.sizes.count"]),
                                  state["jobs.criticality.sizes.buf"].numel())
    assert sizes_ring.min() >= 1


def test_fumd_plot_cli(state_dir: Path) -> None:
    out = subprocess.run(fumd_cmd("plot", "--state-dir", str(state_dir)), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    paths = [Path(p) for p in json.loads(out.stdout)["plots"]]
    assert [p.name for p in paths] == list(FIGURES) and all(p.parent == state_dir / "plots" for p in paths)
    _check_png(paths[0])


def test_missing_history_skips_figures_and_no_checkpoint_is_an_error(state_dir: Path, tmp_path: Path) -> None:
    from fumd.errors import FumdError
    from fumd.ops.plots import make_plots

    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    with pytest.raises(FumdError, match="no checkpoint"):
        make_plots(bare, tmp_path / "none")
    (bare / "checkpoints").rmdir()
    (bare / "checkpoints").symlink_to(state_dir / "checkpoints")  # checkpoint, no history
    names = [p.name for p in make_plots(bare, tmp_path / "some")]
    assert names == ["weights.png", "cluster_graph.png", "avalanches.png"]
    out = subprocess.run(fumd_cmd("plot", "--state-dir", str(tmp_path / "nothing")), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "no checkpoint" in out.stderr
