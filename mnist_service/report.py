"""The training report written beside each model: one self-contained HTML page (the plots inline as
PNG) with what a person checks before trusting a model: the learning curves, the confusion matrix
on the MNIST test split, and every misclassified test digit as the model saw it, with its true and
predicted label. Training writes it (:func:`write_report`); the server serves it as it is
(``GET /models/{name}/report``). Plots are matplotlib's, drawn off-screen (Agg).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

# Misclassified digits shown at most (a healthy CNN has a few dozen on the test split; a broken one
# thousands, and a page of 10,000 thumbnails says no more than the confusion matrix does).
MAX_MISTAKES = 200
MISTAKE_COLUMNS = 10


def _png(figure) -> str:
    """A matplotlib figure as an inline ``<img>`` (a data: URL), the figure closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{encoded}">'


def learning_curves(history: dict[str, list[float]]):
    """Loss and accuracy per epoch: on the augmented training batches, and on the test split as it
    was monitored after each epoch (shown, never used to choose anything); the learning rate."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["loss"]) + 1)
    figure, (loss, accuracy, rate) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss.plot(epochs, history["loss"], marker="o", label="training (augmented)")
    loss.plot(epochs, history["test_loss"], marker="o", label="test split")
    loss.set(title="Loss", xlabel="epoch", yscale="log")
    accuracy.plot(epochs, 100 * np.asarray(history["accuracy"]), marker="o", label="training (augmented)")
    accuracy.plot(epochs, 100 * np.asarray(history["test_accuracy"]), marker="o", label="test split")
    accuracy.set(title="Accuracy (%)", xlabel="epoch")
    rate.plot(epochs, history["learning_rate"], marker="o")
    rate.set(title="Learning rate at the epoch's end", xlabel="epoch")
    for axes in (loss, accuracy, rate):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss.legend()
    accuracy.legend()
    figure.tight_layout()
    return figure


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The 10x10 confusion matrix: row = true digit, column = predicted digit."""
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def confusion_figure(matrix: np.ndarray):
    """The confusion matrix as a heat map, each cell's count written in it; the diagonal (right
    answers) is left out of the colour scale so the mistakes are what stands out."""
    import matplotlib.pyplot as plt

    off_diagonal = matrix * (1 - np.eye(10, dtype=matrix.dtype))
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    image = axes.imshow(off_diagonal, cmap="Reds", vmin=0, vmax=max(1, off_diagonal.max()))
    for row in range(10):
        for column in range(10):
            count = matrix[row, column]
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                          color="black" if row == column or off_diagonal[row, column] < 0.6 * off_diagonal.max()
                          else "white", fontweight="bold" if row == column else "normal")
    axes.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
             title="Confusion matrix, MNIST test split (as served)")
    figure.colorbar(image, ax=axes, label="mistakes")
    figure.tight_layout()
    return figure


def mistakes_figure(pixels: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, shown: np.ndarray):
    """The misclassified digits ``shown`` (indices), as the model saw them (28x28, after
    normalisation), in one mosaic, each captioned with its test index, its true label, the predicted
    one and its probability."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(shown) // MISTAKE_COLUMNS))
    cell, caption = 28 + 4, 22  # a thumbnail with a 2 px margin, and room for its caption above
    mosaic = np.full((rows * (cell + caption), MISTAKE_COLUMNS * cell), 255, dtype=np.uint8)
    figure, axes = plt.subplots(figsize=(MISTAKE_COLUMNS * 1.2, rows * 1.6))
    for n, index in enumerate(shown):
        top, left = (n // MISTAKE_COLUMNS) * (cell + caption) + caption, (n % MISTAKE_COLUMNS) * cell
        mosaic[top + 2:top + 30, left + 2:left + 30] = 255 - pixels[index]  # dark ink on white, as written
        guess = int(probabilities[index].argmax())
        axes.text(left + cell / 2, top - 1, f"#{index}\n{labels[index]} → {guess} ({probabilities[index, guess]:.2f})",
                  ha="center", va="bottom", fontsize=7.5)
    axes.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.axis("off")
    figure.tight_layout()
    return figure


def render(metadata: dict, history: dict[str, list[float]], test_pixels: np.ndarray, test_labels: np.ndarray,
           probabilities: np.ndarray) -> str:
    """The report as one HTML page. ``probabilities`` are the served model's on the test split
    (``test_pixels``, 28x28 uint8 as normalisation made them)."""
    import matplotlib

    matplotlib.use("Agg")
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != test_labels)
    # The most confident mistakes first: those are the ones worth looking at.
    shown = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:MAX_MISTAKES]
    matrix = confusion(test_labels, predicted)
    name = html.escape(metadata["name"])
    facts = {
        "version": metadata["version"],
        "test accuracy as served (LiteRT, int8 weights)": f"{100 * metadata['test_accuracy']:.2f} %"
        f" ({len(wrong)} of {len(test_labels)} test digits wrong)",
        "test accuracy of the Keras model": f"{100 * metadata['keras_test_accuracy']:.2f} %",
        **({"accuracy on the training images held out, as served": f"{100 * metadata['holdout_accuracy']:.2f} %"
            f" ({metadata['holdout_examples']} images)"} if "holdout_accuracy" in metadata else {}),
        "training": f"{metadata['epochs']} epochs, batch {metadata['batch_size']}, seed {metadata['seed']}, "
                    f"{metadata['train_examples']} images, {metadata['training_seconds']} s "
                    f"({metadata['seconds_per_epoch']} s an epoch)",
        "parameters": f"{metadata['parameters']:,}",
        "trained at": metadata["trained_at"],
        "versions": ", ".join(f"{k} {v}" for k, v in metadata["versions"].items()),
        "data sha256": metadata["data_sha256"],
    }
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    per_digit = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    digits = "".join(f"<td>{100 * share:.2f}</td>" for share in per_digit)
    mistakes = (_png(mistakes_figure(test_pixels, test_labels, probabilities, shown)) if len(shown)
                else "<p>None.</p>")
    more = (f"<p>The {len(shown)} most confident of {len(wrong)} mistakes.</p>" if len(wrong) > len(shown) else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name}: training report</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem;
       color: #1d2329; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
th, td {{ text-align: left; padding: .2rem .8rem .2rem 0; vertical-align: top; }}
.digits td, .digits th {{ text-align: right; padding: .2rem .5rem; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{name}: training report</h1>
<table>{rows}</table>
<h2>Learning curves</h2>
{_png(learning_curves(history))}
<p>The test split is evaluated after each epoch only to draw these curves; no epoch, seed or setting
is chosen by it, and the model saved is the one at the end of the last epoch.</p>
<h2>Confusion matrix</h2>
{_png(confusion_figure(matrix))}
<table class="digits"><tr><th>digit</th>{"".join(f"<th>{d}</th>" for d in range(10))}</tr>
<tr><th>accuracy (%)</th>{digits}</tr></table>
<h2>Misclassified test digits</h2>
<p>As the model saw them (after normalisation), the most confident mistakes first:
test index, true digit → predicted digit (its probability).</p>
{more}
{mistakes}
</body></html>
"""


def write_report(path: Path, metadata: dict, history: dict[str, list[float]], test_pixels: np.ndarray,
                 test_labels: np.ndarray, probabilities: np.ndarray) -> Path:
    """Write the report (:func:`render`) to ``path``; return it."""
    path = Path(path)
    path.write_text(render(metadata, history, test_pixels, test_labels, probabilities), encoding="utf-8")
    return path
