"""An experiment's results as files beside it: summary.md, summary.csv and curves.png.

Written by `dlhpc summary EXP --save`, and with `resources.report: true` by a small job that
the scheduler starts when every job of the experiment has ended (afterany), so the results exist
without anyone watching from the login node. The local runner writes them when it is done.
"""

from pathlib import Path


def save(exp_dir: Path, accounting: bool = True) -> list[Path]:
    """Write the three files (atomically each); returns their paths."""
    from dlhpc.fsutil import atomic_write_text, private_mode
    from dlhpc.ownership import require_own
    from dlhpc.results import plot, status
    from dlhpc.results import rows as results

    require_own(exp_dir, "write summary files into it; summary --csv/--markdown -o FILE writes elsewhere")
    info, _warnings = status.scheduler_info(exp_dir, details=False) if accounting else (None, [])
    record, rows = results.experiment_rows(exp_dir, info)
    cols = results.columns(rows, record.get("swept_keys", [])) + ["flags"]
    written = []
    for name, text in (
        ("summary.md", f"# {exp_dir.name}\n\n" + results.render_markdown(rows, cols)),
        ("summary.csv", results.render_csv(rows, cols)),
    ):
        atomic_write_text(exp_dir / name, text, mode=private_mode())
        written.append(exp_dir / name)
    plot.plot_experiment(exp_dir, exp_dir / "curves.png", mode=private_mode())
    return written + [exp_dir / "curves.png"]
