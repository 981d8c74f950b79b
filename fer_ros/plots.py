"""PNG plots: training curves and confusion matrices (matplotlib, imported lazily, Agg backend)."""

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Accuracy and loss per epoch, train and validation, side by side."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], label="validation")
        for name in [k for k in history[-1] if key == "accuracy" and k.startswith("val_accuracy/")]:
            ax.plot(epochs, [h.get(name) for h in history], label=name.split("/", 1)[1], lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm, classes, path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, true classes on the rows."""
    plt = pyplot()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_shares(table: dict[str, dict], classes, path: str | Path, title: str) -> None:
    """One horizontal bar per row of `table` ({row: {class: share, "n": count}}), split into the class shares."""
    plt = pyplot()
    rows = list(table)
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.4))
    left = np.zeros(len(rows))
    colours = plt.get_cmap("tab10").colors
    for i, c in enumerate(classes):
        share = np.array([table[r][c] for r in rows])
        ax.barh(range(len(rows)), share, left=left, color=colours[i % 10], label=c)
        left += share
    ax.set_yticks(range(len(rows)), [f"{r} ({table[r]['n']})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of faces")
    ax.set_title(title)
    ax.legend(ncol=len(classes), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.06), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
