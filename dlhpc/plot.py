"""`dlhpc plot`: learning curves per trial and, for a scaling study, throughput and efficiency."""

from pathlib import Path

from dlhpc import results


def _label(row: dict, swept: list) -> str:
    parts = [f"{k.split('.')[-1]}={row[k]}" for k in swept if k in row]
    return row["trial"] + (" " + ", ".join(parts) if parts else "")


def plot_experiment(exp_dir: Path, out: Path) -> Path:
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
        pts = sorted((r["world_size"], r.get("images_per_s") or 0, r.get("efficiency") or 0)
                     for r in rows if r.get("world_size"))
        ax = axes[2]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="tab:blue", label="images/s")
        ax.set(title="Scaling", xlabel="world size (ranks)", ylabel="images/s")
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in pts], [100 * p[2] for p in pts], marker="s", color="tab:orange", label="efficiency")
        ax2.set_ylabel("parallel efficiency (%)")
        ax.legend(loc="upper left")
        ax2.legend(loc="lower right")
    from matplotlib.ticker import MaxNLocator

    for ax in axes[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{record.get('name')} — {exp_dir.name}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
