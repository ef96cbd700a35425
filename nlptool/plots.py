"""The figures a run writes: training curves, a confusion matrix, attention heat maps.

Each is a `matplotlib.figure.Figure` of its own, outside pyplot, so that
drawing one needs no display and leaves the process's backend alone (a
notebook keeps showing its own figures), and is written atomically as a
PNG.
"""

import numpy as np

from nlptool.files import write_atomically


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(figure, path):
    figure.tight_layout()
    write_atomically(path, lambda stream: figure.savefig(stream, format="png", dpi=120), binary=True)
    return path


def plot_history(history, path, metrics=("loss", "accuracy")):
    """Training and validation curves of `metrics` per epoch from a
    history.csv frame; metrics the history lacks are left out."""
    metrics = [name for name in metrics if name in history or f"val_{name}" in history]
    figure = _figure((4.5 * len(metrics), 3.5))
    axes = figure.subplots(1, len(metrics), squeeze=False)
    epochs = history["epoch"] + 1
    for axis, metric in zip(axes[0], metrics):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + metric in history:
                axis.plot(epochs, history[prefix + metric], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    return _save(figure, path)


def plot_confusion_matrix(confusion, path):
    """`confusion`: {"labels": class names, "matrix": rows of counts (true x predicted)}."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure = _figure((4 + 0.4 * len(confusion["labels"]),) * 2)
    axes = figure.subplots()
    ConfusionMatrixDisplay(np.array(confusion["matrix"]), display_labels=confusion["labels"]).plot(
        ax=axes, colorbar=False
    )
    return _save(figure, path)


def plot_attention(
    weights, source_pieces, target_pieces, path, source_label="source", target_label="output", row_values=None
):
    """A heat map of attention `weights` (target pieces x source pieces);
    with `row_values` (one per target piece, in [0, 1], such as p_gen), a
    column of them beside it."""
    size = (1.5 + 0.45 * len(source_pieces) + (0.6 if row_values is not None else 0), 1.2 + 0.38 * len(target_pieces))
    figure = _figure(size)
    if row_values is None:
        axes = figure.subplots()
    else:
        axes, side = figure.subplots(1, 2, gridspec_kw={"width_ratios": [max(len(source_pieces), 1), 1.2]}, sharey=True)
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_pieces)), [p or "\u2581" for p in source_pieces], rotation=60, ha="right")
    axes.set_yticks(range(len(target_pieces)), [p or "\u2581" for p in target_pieces])
    axes.set_xlabel(source_label)
    axes.set_ylabel(target_label)
    if row_values is not None:
        values = np.asarray(row_values, dtype=float).reshape(-1, 1)
        side.imshow(values, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
        for row, value in enumerate(values[:, 0]):
            side.text(0, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
        side.set_xticks([0], ["p_gen"])
    figure.colorbar(image, ax=axes, fraction=0.04)
    return _save(figure, path)
