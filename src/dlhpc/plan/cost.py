"""What a submission will charge: trials x nodes x GPUs (or cores) x walltime, before spending it."""

from dlhpc.spec.load import tasks_per_node
from dlhpc.spec.schema import parse_time


def trial_hours(res: dict) -> tuple[float, float]:
    """(core-hours, GPU-hours) one trial may hold: its resources for its whole walltime."""
    hours = parse_time(res["time"]) / 3600
    return res["nodes"] * tasks_per_node(res) * res["cpus_per_task"] * hours, res["nodes"] * res[
        "gpus_per_node"
    ] * hours


def charge(core_h: float, gpu_h: float, rates: dict) -> tuple[float, str]:
    """(cost, unit): the site's charge units where it sets rates, else GPU-hours or core-hours."""
    core_rate, gpu_rate = rates.get("core_hour"), rates.get("gpu_hour")
    if core_rate is None and gpu_rate is None:
        return (gpu_h, "GPU-hours") if gpu_h else (core_h, "core-hours")
    return core_h * (core_rate or 0) + gpu_h * (gpu_rate or 0), rates.get("unit") or "SU"


def estimate(plan) -> dict:
    rates = plan.spec.site.get("charge_rates") or {}
    core_h = gpu_h = 0.0
    for trial in plan.trials:
        c, g = trial_hours(trial.data["resources"])
        core_h, gpu_h = core_h + c, gpu_h + g
    cost, unit = charge(core_h, gpu_h, rates)
    return {"trials": len(plan.trials), "core_hours": core_h, "gpu_hours": gpu_h, "cost": cost, "unit": unit}


def describe(e: dict) -> str:
    text = f"at most {e['core_hours']:.2f} core-hours"
    if e["gpu_hours"]:
        text += f" and {e['gpu_hours']:.2f} GPU-hours"
    if e["unit"] not in ("GPU-hours", "core-hours"):
        text += f" = {e['cost']:.2f} {e['unit']}"
    return f"cost: {e['trials']} trial(s), {text} (walltime limit x resources; actual use is usually less)"
