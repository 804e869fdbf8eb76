"""`dlhpc plot`: learning curves per trial and, for a scaling study, throughput and efficiency."""

import os
import tempfile
from pathlib import Path

from dlhpc.fsutil import user_mode
from dlhpc.results import rows as results


def _label(row: dict, swept: list) -> str:
    parts = [f"{k.split('.')[-1]}={row[k]}" for k in swept if k in row]
    return row["trial"] + (" " + ", ".join(parts) if parts else "")


def _scaling_panel(ax, rows):
    """Throughput (left axis) and parallel efficiency (right axis) against world size: one marker
    per trial, labelled nodes x tasks, and a line through the mean of each world size."""
    from matplotlib.ticker import MaxNLocator

    pts = [r for r in rows if r.get("world_size") and r.get("images_per_s")]
    sizes = sorted({r["world_size"] for r in pts})
    eff = ax.twinx()
    for axis, key, colour, marker, label in (
        (ax, "images_per_s", "tab:blue", "o", "images/s"),
        (eff, "efficiency", "tab:orange", "s", "efficiency (%)"),
    ):
        scale = 100 if key == "efficiency" else 1
        axis.scatter(
            [r["world_size"] for r in pts],
            [scale * (r.get(key) or 0) for r in pts],
            color=colour,
            marker=marker,
            alpha=0.6,
        )
        means = [
            scale
            * sum(r.get(key) or 0 for r in pts if r["world_size"] == n)
            / sum(1 for r in pts if r["world_size"] == n)
            for n in sizes
        ]
        axis.plot(sizes, means, color=colour, label=label)
    for r in pts:
        nodes = r.get("nodes") or r.get("resources.nodes") or 1
        ax.annotate(
            f"{nodes}x{r['world_size'] // nodes}",
            (r["world_size"], r["images_per_s"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 4),
        )
    ax.set(title="Scaling", xlabel="world size (ranks)", ylabel="images/s")
    eff.set_ylabel("parallel efficiency (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines = ax.get_legend_handles_labels()[0] + eff.get_legend_handles_labels()[0]
    ax.legend(lines, ["images/s (mean)", "efficiency (mean)"], fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def plot_experiment(exp_dir: Path, out: Path, mode: int | None = None) -> Path:
    """The learning curves of an experiment as a PNG at `out` (mode None: what the umask gives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record, rows = results.experiment_rows(exp_dir)
    swept = record.get("swept_keys", [])
    scaling = any("speedup" in r for r in rows)
    ncols = 3 if scaling else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), dpi=100)
    for row in rows:
        metrics, _ = results.read_metrics(exp_dir / row["trial"] / "metrics.jsonl")
        if not metrics:
            continue
        epochs = [m.get("epoch") for m in metrics]
        label = _label(row, swept)
        axes[0].plot(epochs, [100 * (m.get("test_acc") or 0) for m in metrics], marker="o", label=label)
        axes[1].plot(epochs, [m.get("test_loss") for m in metrics], marker="o", label=label)
    axes[0].set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (%)")
    axes[1].set(title="Test loss", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    if scaling:
        _scaling_panel(axes[2], rows)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{record.get('name')} — {exp_dir.name}")
    return save_figure(fig, out, mode)


def save_figure(fig, out: Path, mode: int | None = None) -> Path:
    """Write a figure as a PNG at `out`, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name nobody can guess (a symlink planted at a fixed temp name would be written through)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, user_mode() if mode is None else mode)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out
