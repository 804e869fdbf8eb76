"""`dlhpc usage`: what dlhpc's jobs used of the allocation, per user and account, from the
scheduler's accounting, beside what was estimated at submit time (walltime x resources)."""

import csv
import io

from dlhpc.plan.cost import charge


def aggregate(rows: list, rates: dict) -> list[dict]:
    """One line per (user, account): jobs, trials, core- and GPU-hours used and estimated, cost."""
    groups: dict = {}
    for r in rows:
        g = groups.setdefault(
            (r["user"], r["account"]),
            {
                "user": r["user"],
                "account": r["account"],
                "jobs": set(),
                "experiments": set(),
                "trials": 0,
                "core_hours": 0.0,
                "gpu_hours": 0.0,
                "est_core_hours": 0.0,
                "est_gpu_hours": 0.0,
            },
        )
        g["jobs"].add(r["job_id"].split("_")[0])
        g["experiments"].add(r["experiment"])
        g["trials"] += 1
        for key in ("core_hours", "gpu_hours", "est_core_hours", "est_gpu_hours"):
            g[key] += r.get(key) or 0.0
    out = []
    for g in sorted(groups.values(), key=lambda g: (g["user"], g["account"])):
        cost, unit = charge(g["core_hours"], g["gpu_hours"], rates)
        est_cost, _ = charge(g["est_core_hours"], g["est_gpu_hours"], rates)
        out.append(
            {
                **g,
                "jobs": len(g["jobs"]),
                "experiments": len(g["experiments"]),
                "charge": cost,
                "est_charge": est_cost,
                "unit": unit,
            }
        )
    return out


COLUMNS = (
    "user",
    "account",
    "jobs",
    "experiments",
    "trials",
    "core_hours",
    "gpu_hours",
    "charge",
    "est_core_hours",
    "est_gpu_hours",
    "est_charge",
    "unit",
)


def render_csv(lines) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for line in lines:
        writer.writerow({k: line[k] for k in COLUMNS})
    return buf.getvalue()


def rich_table(lines, title: str):
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    headers = ("user", "account", "jobs", "experiments", "trials", "core-h", "GPU-h", "charge", "estimated charge")
    for h in headers:
        table.add_column(h, justify="left" if h in ("user", "account") else "right")
    for line in lines:
        table.add_row(
            line["user"],
            line["account"],
            str(line["jobs"]),
            str(line["experiments"]),
            str(line["trials"]),
            f"{line['core_hours']:.3f}",
            f"{line['gpu_hours']:.3f}",
            f"{line['charge']:.3f} {line['unit']}",
            f"{line['est_charge']:.3f} {line['unit']}",
        )
    return table
