"""Report figures as PNG bytes (matplotlib, Agg backend)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from orchestrator.report.tables import pareto_front  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_epochs(df: pd.DataFrame) -> bytes | None:
    """Test accuracy against epochs, one line per architecture, mean with min-max spread over repeats."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for arch, g in done.groupby("architecture"):
        stats = g.groupby("epochs")["accuracy"].agg(["mean", "min", "max"]).sort_index()
        ax.plot(stats.index, stats["mean"] * 100, marker="o", label=arch)
        ax.fill_between(stats.index, stats["min"] * 100, stats["max"] * 100, alpha=0.2)
    ax.set_xlabel("epochs")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs epochs (mean, spread over repeats)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def training_time_by_hardware(df: pd.DataFrame) -> bytes | None:
    """Steady-state seconds per epoch per architecture, bars grouped by node type."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return None
    table = done.pivot_table(index="architecture", columns="node_type", values="steady_epoch_s", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(6, 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("seconds per epoch (steady state)")
    ax.set_title("Training time by hardware")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def f1_vs_cost(df: pd.DataFrame) -> bytes | None:
    """Macro F1 against trial cost, Pareto-optimal trials marked."""
    done = df[(df["status"] == "completed") & df["cost_usd"].notna()]
    if done.empty:
        return None
    points = done[["cost_usd", "f1_macro", "architecture", "node_type"]].reset_index(drop=True)
    front = pareto_front(points, "cost_usd", "f1_macro")
    fig, ax = plt.subplots(figsize=(6, 4))
    for (arch, node), g in points.groupby(["architecture", "node_type"]):
        ax.scatter(g["cost_usd"], g["f1_macro"], label=f"{arch} / {node}", alpha=0.8)
    best = points[front].sort_values("cost_usd")
    ax.plot(best["cost_usd"], best["f1_macro"], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("cost per trial (USD)")
    ax.set_ylabel("macro F1")
    ax.set_title("F1 vs cost")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def learning_curves(history: list[dict], title: str) -> bytes | None:
    if not history:
        return None
    h = pd.DataFrame(history)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    for col, ax in (("accuracy", a1), ("loss", a2)):
        ax.plot(h["epoch"], h[col], marker=".", label=f"train {col}")
        if f"val_{col}" in h:
            ax.plot(h["epoch"], h[f"val_{col}"], marker=".", label=f"val {col}")
        ax.set_xlabel("epoch")
        ax.set_title(col)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    cm = np.asarray(matrix)
    size = max(4, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _png(fig)
