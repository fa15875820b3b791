"""The training plots: d2l's curves of one run (``curves.png``) and the overlay of several (``train --framework all``).

Matplotlib with the Agg backend (no display), imported on first use.
"""

from __future__ import annotations

from . import frameworks as fw_registry


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_curves(history: list[dict], path, *, title: str = "") -> None:
    """d2l's plot: train loss, train accuracy and test accuracy against the epoch, here in two panels."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    left.plot(epochs, [row["loss"] for row in history], "o-", label="train loss")
    left.plot(epochs, [row["test_loss"] for row in history], "s--", label="test loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    right.plot(epochs, [row["train_acc"] for row in history], "o-", label="train acc")
    right.plot(epochs, [row["test_acc"] for row in history], "s--", label="test acc")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_overlay(histories: dict[str, list[dict]], path, *, title: str = "") -> None:
    """Loss and accuracy against the epoch, one colour per framework: training solid, test dashed."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for (key, history), colour in zip(histories.items(), ("C0", "C1", "C2", "C3")):
        label = fw_registry.FRAMEWORKS[key].label
        epochs = [row["epoch"] for row in history]
        left.plot(epochs, [row["loss"] for row in history], "o-", color=colour, label=f"{label} train")
        left.plot(epochs, [row["test_loss"] for row in history], "s--", color=colour, label=f"{label} test")
        right.plot(epochs, [row["train_acc"] for row in history], "o-", color=colour, label=f"{label} train")
        right.plot(epochs, [row["test_acc"] for row in history], "s--", color=colour, label=f"{label} test")
    left.set_ylabel("cross-entropy")
    left.set_yscale("log")  # an early test loss can be ten times the training loss (BatchNorm's running statistics)
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    right.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
