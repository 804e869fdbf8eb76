"""`dlhpc plot --search`: a search's optimisation history and its parameters' importances, one PNG
(matplotlib; the importances are Optuna's, fANOVA where scikit-learn is there, else PED-ANOVA)."""

from pathlib import Path


def plot_search(exp_dir: Path, out: Path, mode: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlhpc.results.plot import save_figure
    from dlhpc.results.rows import experiment_rows

    record, rows = experiment_rows(Path(exp_dir))
    search = (record.get("spec") or {}).get("search")
    if not search:
        from dlhpc.errors import UserError

        raise UserError(f"plot --search: {Path(exp_dir).name} does not search (no search: block)")
    fig, (history, weights) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    _history(history, rows, search)
    _importances(weights, exp_dir, record["name"])
    how = f"{search['sampler']}, {search['pruner']['kind']}"
    fig.suptitle(f"{record.get('name')} — search of {search['trials']} trials ({how})")
    return save_figure(fig, out, mode)


def _history(ax, rows: list, search: dict) -> None:
    """Each trial's value by trial number (pruned ones at the value they stopped at), and the best so far."""
    maximize = search["direction"] == "maximize"
    best, best_line = None, []
    for kind, marker, color in (("COMPLETED", "o", "tab:blue"), ("PRUNED", "x", "tab:gray")):
        points = [(i, r["objective"]) for i, r in enumerate(rows) if r["state"] == kind and _number(r.get("objective"))]
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, color=color, label=kind.lower(), zorder=3)
    for row in rows:
        if row["state"] == "COMPLETED" and _number(row.get("objective")):
            value = row["objective"]
            best = value if best is None or (value > best if maximize else value < best) else best
        best_line.append(best)
    xs = [i for i, b in enumerate(best_line) if b is not None]
    if xs:
        ax.step(xs, [best_line[i] for i in xs], where="post", color="tab:red", label="best so far")
    ax.set(title="Optimisation history", xlabel="trial", ylabel=search["metric"])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _importances(ax, exp_dir: Path, name: str) -> None:
    ax.set(title="Parameter importances", xlabel="importance")
    try:
        import optuna

        from dlhpc.search import study

        loaded = study.load(Path(exp_dir), name)
        try:
            scores = optuna.importance.get_param_importances(loaded)
        except ImportError:  # fANOVA needs scikit-learn
            scores = optuna.importance.get_param_importances(
                loaded, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except ImportError:
        return _note(ax, 'needs Optuna: pip install "dlhpc[search]"')
    except (ValueError, RuntimeError) as exc:  # too few completed trials, one value everywhere
        return _note(ax, f"not yet: {str(exc).splitlines()[0][:80]}")
    keys = list(scores)[::-1]
    ax.barh(keys, [scores[k] for k in keys], color="tab:blue")
    ax.tick_params(axis="y", labelsize=8)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _number(x) -> bool:
    import math

    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
