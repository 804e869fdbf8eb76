"""`dlhpc report EXP -o report.html`: one self-contained HTML page to look at after `scp`: the
summary table, the learning curves (and the scaling panel where the world size varies), and
the environment record. Styles and figures are inline (a PNG as a data: URI); the page fetches
nothing from the network.
"""

import base64
import html
import json
import tempfile
from pathlib import Path

from dlhpc.results import redact
from dlhpc.results import rows as results

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
tr.best td { font-weight: bold; background: #eef8ee; }
.FAILED, .CANCELLED, .TIMEOUT { color: #b00; } .COMPLETED { color: #060; } .RUNNING, .PENDING { color: #a60; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def _cell(col: str, row: dict) -> str:
    text = html.escape(results.fmt(col, row.get(col)))
    if col == "state":
        return f'<td class="text {html.escape(str(row.get(col)))}">{text}</td>'
    return f'<td class="text">{text}</td>' if col in ("trial", "model", "flags") else f"<td>{text}</td>"


def table_html(rows: list, cols: list) -> str:
    best = results.best_index(rows)
    head = "".join(f"<th>{html.escape(results.HEADERS.get(c, c))}</th>" for c in cols)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="best"' if i == best else ""
        body.append(f"<tr{cls}>" + "".join(_cell(c, row) for c in cols) + "</tr>")
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_html(exp_dir: Path, draw=None, alt: str = "learning curves") -> str:
    from dlhpc.results import plot

    with tempfile.TemporaryDirectory() as tmp:
        png = (draw or plot.plot_experiment)(exp_dir, Path(tmp) / "figure.png").read_bytes()
    data = base64.b64encode(png).decode()
    return f'<img class="figure" alt="{alt}" src="data:image/png;base64,{data}">'


def search_html(record: dict, rows: list, exp_dir: Path) -> str:
    """A search: its counts by state, the best trials with their values, its history and importances."""
    from dlhpc.search.plot import plot_search
    from dlhpc.search.results import study_view

    view = study_view(record, rows)
    if view is None:
        return ""
    counts = ", ".join(f"{n:,} {state}" for state, n in sorted(view["counts"].items(), key=lambda kv: -kv[1]))
    cols = ["trial", view["metric"], *view["keys"]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    cell = "<td class='text'>{}</td>".format
    body = "".join("<tr>" + "".join(cell(html.escape(str(b.get(c)))) for c in cols) + "</tr>" for b in view["best"])
    words = html.escape(
        f"{view['trials']:,} trials by {view['parallel']} agents ({view['sampler']}, pruner {view['pruner']}; "
        f"seed {view['seed']}), {view['direction']} {view['metric']}: {counts}"
    )
    figure = figure_html(exp_dir, plot_search, "search history and importances")
    return f"<h2>Search</h2><p id='study'>{words}</p><table id='best'><tr>{head}</tr>{body}</table>{figure}"


def environment_html(record: dict, exp_dir: Path) -> str:
    """The environment record as `dlhpc show` gives it (show.environment), as tables."""
    from dlhpc.results import show

    env = show.environment(exp_dir)
    facts = {
        "experiment": env["experiment"],
        "scheduler": env["scheduler"],
        "created": env["created"],
        "submitted": env["submitted"],
        "spec": env["spec"],
        "spec hash": env["spec_hash"],
        "commit": show.commit_label(env["git"]),
        "versions": ", ".join(f"{k} {v}" for k, v in (env["versions"] or {}).items() if v),
        "jobs": ", ".join(env["jobs"]) or "-",
    }
    items = "".join(
        f"<tr><th>{html.escape(k)}</th><td class='text'>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    hosts = "".join(
        f"<tr><td class='text'>{html.escape(t['trial'])}</td>"
        f"<td class='text'>{html.escape(', '.join(t['rank_nodes'] or []) or '-')}</td>"
        f"<td class='text'>{html.escape(str(t['device'] or '-'))}</td></tr>"
        for t in env["trials"]
    )
    spec = html.escape(json.dumps(redact.spec(record.get("spec") or {}), indent=2))  # a page to share
    return (
        f"<table id='environment'>{items}</table><h3>Where each trial ran</h3><table id='hosts'><tr><th>trial"
        f"</th><th>rank nodes</th><th>device</th></tr>{hosts}</table><h3>Resolved spec</h3><pre>{spec}</pre>"
    )


def build(exp_dir: Path) -> str:
    record, rows = results.experiment_rows(exp_dir)
    cols = results.columns(rows, record.get("swept_keys", [])) + ["flags"]
    title = html.escape(f"{record.get('name')}: {exp_dir.name}")
    # the onload line lets a headless browser report how many figures decoded (data-figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head>
<body onload="document.body.dataset.figures = [...document.images].filter(i => i.naturalWidth > 0).length">
<h1>{title}</h1>
{search_html(record, rows, exp_dir)}
<h2>Results</h2>
{table_html(rows, cols)}
<h2>Learning curves</h2>
{figure_html(exp_dir)}
<h2>Environment</h2>
{environment_html(record, exp_dir)}
<p><small>Written by dlhpc report; accuracies in %, times in seconds.</small></p>
</body></html>
"""
