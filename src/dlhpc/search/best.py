"""`dlhpc submit --best-of EXP`: the best trial of a search, trained again as a new experiment
(e.g. longer, or on the full data with --set), from the experiment's spec as it was resolved."""

import json
from pathlib import Path

from dlhpc.errors import UserError


def best_trial(exp_dir: Path) -> dict:
    """The completed trial with the best value of the search's metric: {trial, params, value}."""
    from dlhpc.results.rows import experiment_rows

    record, rows = experiment_rows(Path(exp_dir))
    search = (record.get("spec") or {}).get("search")
    if not search:
        raise UserError(f"--best-of {Path(exp_dir).name}: that experiment does not search (it has no search: block)")
    scored = [r for r in rows if r["state"] == "COMPLETED" and isinstance(r.get("objective"), (int, float))]
    if not scored:
        raise UserError(
            f"--best-of {Path(exp_dir).name}: no trial of the search has completed yet (dlhpc status "
            f"{Path(exp_dir).name}); wait for one, or look at the pruned ones with dlhpc summary"
        )
    pick = max if search["direction"] == "maximize" else min
    best = pick(scored, key=lambda r: r["objective"])
    params = (json.loads((Path(exp_dir) / best["trial"] / "trial.json").read_text()) or {}).get("params") or {}
    return {"trial": best["trial"], "params": params, "value": best["objective"], "metric": search["metric"]}


def retrain_spec(exp_dir: Path, sets: list, say=print):
    """The searched experiment's resolved spec without its search, with the best trial's values,
    then the caller's --set; named <name>-best. The site's policy of today applies."""
    from dlhpc.ownership import require_own
    from dlhpc.results.rows import read_record
    from dlhpc.spec import policy
    from dlhpc.spec.load import load_spec, parse_sets, resolve

    exp_dir = Path(exp_dir)
    require_own(exp_dir, "train its best trial again: its env.setup and program would run as you")
    record = read_record(exp_dir)
    best = best_trial(exp_dir)
    data = {k: v for k, v in record["spec"].items() if k not in ("search", "sweep")}
    data["name"] = f"{record['name']}-best"[:64]
    chosen = [f"{key}={json.dumps(value)}" for key, value in best["params"].items()]
    site = load_spec(None, enforce_policy=False)
    spec = resolve([(data, {}), parse_sets(chosen), parse_sets(sets)], site.site, source=record.get("spec_source"))
    spec.site_file, spec.site_defaults, spec.site_origins = site.site_file, site.site_defaults, site.site_origins
    policy.enforce(spec)
    values = ", ".join(f"{k}={json.dumps(v)}" for k, v in best["params"].items())
    say(f"best of {exp_dir.name}: trial {best['trial']}, {best['metric']} {best['value']:.4g}, with {values}")
    return spec
