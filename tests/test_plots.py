"""nlptool.plots: each figure is written as a PNG without touching the
process's matplotlib backend, so that a notebook that trains a run keeps
showing its own figures."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from nlptool import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def svg_backend():
    """A backend other than Agg selected for the process, as a notebook's inline backend would be."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(before)


def test_every_plot_is_a_png_and_leaves_the_backend_alone(svg_backend, tmp_path):
    history = pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.6], "val_loss": [1.1, 0.8], "accuracy": [0.5, 0.7]})
    written = [
        plots.plot_history(history, tmp_path / "curves.png"),
        plots.plot_confusion_matrix({"labels": ["neg", "pos"], "matrix": [[3, 1], [0, 4]]}, tmp_path / "cm.png"),
        plots.plot_attention(np.full((2, 3), 1 / 3), ["a", "", "c"], ["x", "y"], tmp_path / "a.png", row_values=[0, 1]),
    ]
    assert [path.read_bytes()[:8] for path in written] == [PNG_SIGNATURE] * 3
    assert matplotlib.get_backend() == svg_backend
