"""Report figures as PNG bytes (matplotlib, Agg backend). Repeats are drawn as mean with error bars (sample
standard deviation); labels are plain text (``$`` in a class or experiment name is not parsed as math)."""
from __future__ import annotations

import functools
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from orchestrator.report.tables import completed, measured  # noqa: E402

_STYLE = {"text.parse_math": False, "axes.spines.top": False, "axes.spines.right": False, "font.size": 9,
          "axes.titlesize": 10, "legend.fontsize": 7, "figure.dpi": 100}
_MARKERS = "osD^vP*Xh<>"


def _plain(fn):
    """Render with the report's style; any figure left open by an error is closed."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_STYLE):
            try:
                return fn(*args, **kwargs)
            finally:
                plt.close("all")
    return wrapper


OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}  # legend right of the axes


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes (reproducible: no software stamp); closes the figure."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def grouped_bars(ax, mean: pd.DataFrame, sd: pd.DataFrame) -> None:
    """Bars of ``mean`` (rows on the x axis, one bar per column) with ``sd`` error bars; a log scale when the
    values span more than 30x."""
    n, x = len(mean.columns), np.arange(len(mean.index))
    width = 0.8 / max(n, 1)
    for i, col in enumerate(mean.columns):
        ax.bar(x + (i - (n - 1) / 2) * width, mean[col], width, yerr=sd[col], capsize=3, label=_label(col))
    ax.set_xticks(x, [str(r) for r in mean.index], rotation=20 if len(x) > 4 else 0)
    values = mean.to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 30:
        ax.set_yscale("log")


def _label(text) -> str:
    # Matplotlib hides legend entries whose label starts with an underscore.
    text = str(text)
    return "\u200b" + text if text.startswith("_") else text


def _sd(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


@_plain
def accuracy_vs_epochs(df: pd.DataFrame) -> bytes | None:
    """Test accuracy against epochs, one line per architecture (and node type when there are several),
    mean with sd error bars over repeats."""
    done = completed(df).dropna(subset=["architecture", "epochs", "accuracy"])
    if done.empty:
        return None
    several_nodes = done["node_type"].nunique() > 1
    keys = ["architecture", "node_type"] if several_nodes else ["architecture"]
    fig, ax = plt.subplots(figsize=(6.2, 4))
    for i, (key, g) in enumerate(done.groupby(keys, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        stats = g.groupby("epochs")["accuracy"].agg(["mean", _sd]).sort_index()
        x = stats.index.astype(float)
        ax.errorbar(x, stats["mean"] * 100, yerr=stats["_sd"] * 100, marker=_MARKERS[i % len(_MARKERS)], capsize=3,
                    label=_label(" / ".join(str(k) for k in key)), linestyle="-" if i < 10 else "--")
    ax.set_xlabel("epochs")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs epochs (mean ± sd over repeats)")
    ax.set_xticks(sorted(done["epochs"].astype(float).unique()))
    ax.legend(**OUTSIDE)  # beside the axes: a legend never hides a point
    ax.grid(alpha=0.3)
    return png_bytes(fig)


@_plain
def training_time_by_hardware(df: pd.DataFrame) -> bytes | None:
    """Steady-state seconds per epoch per architecture, bars grouped by node type, sd error bars (trials that ran
    on another device than requested are left out)."""
    done = measured(df).dropna(subset=["architecture", "node_type", "steady_epoch_s"])
    if done.empty:
        return None
    mean = done.pivot_table(index="architecture", columns="node_type", values="steady_epoch_s", aggfunc="mean")
    sd = done.pivot_table(index="architecture", columns="node_type", values="steady_epoch_s", aggfunc=_sd) \
        .reindex_like(mean).fillna(0)
    fig, ax = plt.subplots(figsize=(6.2, 4))
    grouped_bars(ax, mean, sd)
    ax.set_ylabel("seconds per epoch (steady state)")
    ax.set_title("Training time by hardware (mean ± sd)")
    ax.legend(title="node type")
    ax.grid(alpha=0.3, axis="y")
    return png_bytes(fig)


@_plain
def f1_vs_cost(cost: pd.DataFrame) -> bytes | None:
    """Mean macro F1 against mean cost per trial, one point per setting with sd error bars; settings on the
    Pareto front (``cost.pareto``) are ringed and joined by a dashed line."""
    if cost is None or cost.empty:
        return None
    pts = cost.dropna(subset=["cost_per_trial_usd", "f1_macro"])
    if pts.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.2, 4))
    nodes = sorted(pts["node_type"].dropna().unique())
    archs = sorted(pts["architecture"].dropna().unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for _, row in pts.iterrows():
        ci = nodes.index(row["node_type"]) if row["node_type"] in nodes else 0
        mi = archs.index(row["architecture"]) if row["architecture"] in archs else 0
        ax.errorbar(row["cost_per_trial_usd"], row["f1_macro"],
                    xerr=np.nan_to_num(row["cost_per_trial_usd_sd"]), yerr=np.nan_to_num(row["f1_macro_sd"]),
                    marker=_MARKERS[mi % len(_MARKERS)], color=colors[ci % len(colors)], capsize=2, alpha=0.85,
                    linestyle="none")
        if pd.notna(row.get("epochs")):  # settings that differ only in epochs are told apart by this label
            ax.annotate(f"{int(row['epochs'])} ep", (row["cost_per_trial_usd"], row["f1_macro"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=7, color=colors[ci % len(colors)])
    front = pts[pts["pareto"]].sort_values("cost_per_trial_usd")
    ax.plot(front["cost_per_trial_usd"], front["f1_macro"], "k--", lw=1, drawstyle="steps-post")
    ax.scatter(front["cost_per_trial_usd"], front["f1_macro"], s=170, facecolors="none", edgecolors="k", lw=1.2)
    # Legend: colours are node types, markers architectures, rings the Pareto front.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[i % len(colors)], marker="s", linestyle="none", label=_label(n))
               for i, n in enumerate(nodes)]
    handles += [Line2D([], [], color="grey", marker=_MARKERS[i % len(_MARKERS)], linestyle="none", label=_label(a))
                for i, a in enumerate(archs)]
    handles.append(Line2D([], [], color="k", marker="o", markerfacecolor="none", markersize=10, linestyle="--",
                          label="Pareto front"))
    ax.legend(handles=handles, **OUTSIDE)
    if pts["cost_per_trial_usd"].max() > 0 and (pts["cost_per_trial_usd"] > 0).all() \
            and pts["cost_per_trial_usd"].max() / pts["cost_per_trial_usd"].min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel("cost per trial (USD)")
    ax.set_ylabel("macro F1")
    ax.set_title("F1 vs cost (mean ± sd per setting; Pareto front ringed)")
    ax.grid(alpha=0.3)
    return png_bytes(fig)


@_plain
def learning_curves(histories: list[list[dict]], title: str) -> bytes | None:
    """Accuracy and loss per epoch (train and validation), mean with a ±sd band over the repeats given."""
    frames = [pd.DataFrame(h) for h in histories if h]
    frames = [f for f in frames if "epoch" in f]
    if not frames:
        return None
    h = pd.concat(frames, ignore_index=True)
    panels = [col for col in ("accuracy", "loss") if col in h or f"val_{col}" in h]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
    for col, ax in zip(panels, axes[0]):
        for name, label in ((col, f"train {col}"), (f"val_{col}", f"val {col}")):
            if name not in h:
                continue
            stats = h.groupby("epoch")[name].agg(["mean", _sd]).sort_index()
            ax.plot(stats.index, stats["mean"], marker=".", label=label)
            if len(frames) > 1:
                ax.fill_between(stats.index, stats["mean"] - stats["_sd"], stats["mean"] + stats["_sd"], alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(col)
        ax.legend(loc="lower right" if col == "accuracy" else "upper right")
        ax.grid(alpha=0.3)
    repeats = f" (mean ± sd of {len(frames)} repeats)" if len(frames) > 1 else ""
    fig.suptitle(f"{title}{repeats}", fontsize=9)
    return png_bytes(fig)


@_plain
def confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str) -> bytes | None:
    """Counts with true classes as rows, labelled with the class names."""
    cm = np.asarray(matrix, dtype=float)
    if cm.ndim != 2 or cm.size == 0:
        return None
    names = [str(c) for c in class_names] if len(class_names) == cm.shape[0] else \
        [f"class {i}" for i in range(cm.shape[0])]
    size = max(4.0, 0.55 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize=7,
                    color="white" if top and cm[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)


@_plain
def time_to_target(ttt: pd.DataFrame, target_label: str) -> bytes | None:
    """Time (left) and cost (right) to the target per architecture, bars grouped by node type, sd error bars;
    for each architecture (and augmentation) the largest epoch budget that has a reaching repeat."""
    if ttt is None or ttt.empty:
        return None
    rows = ttt.dropna(subset=["time_to_target_s"])
    if rows.empty:
        return None
    rows = rows[rows["epochs"] == rows.groupby(["architecture", "augmentation"])["epochs"].transform("max")]
    several_aug = rows["augmentation"].nunique() > 1
    rows = rows.assign(group=[f"{a} / {g}" if several_aug else str(a)
                              for a, g in zip(rows["architecture"], rows["augmentation"])])
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, col, label in ((axes[0], "time_to_target_s", "seconds to target"),
                           (axes[1], "cost_to_target_usd", "USD to target")):
        mean = rows.pivot_table(index="group", columns="node_type", values=col, aggfunc="mean")
        sd = rows.pivot_table(index="group", columns="node_type", values=f"{col}_sd", aggfunc="mean") \
            .reindex_like(mean).fillna(0)
        grouped_bars(ax, mean, sd)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(title="node type")
    fig.suptitle(f"Time and cost to {target_label} (mean ± sd over repeats that reached it)", fontsize=9)
    return png_bytes(fig)
