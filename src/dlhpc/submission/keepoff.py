"""resubmit keeps a trial off the node that was lost under it (node/peers.py wrote `lost_node`
into its result.json), through resources.exclude (SLURM --exclude, a PBS host list), but only
while the partition keeps enough usable nodes without it: a trial that needs every node there is
resubmitted as it was, and says so, rather than refused by the scheduler or left waiting forever.
"""

from pathlib import Path

from dlhpc.fsutil import read_json


def plan(exp_dir: Path, chosen: list, sched) -> tuple[dict, list[str]]:
    """({trial id: the nodes to add to its resources.exclude}, what to say), for the chosen trials
    whose last run lost a node."""
    from dlhpc.fsutil import read_trial_spec

    out, said, usable_by_partition = {}, [], {}
    for tid in chosen:
        node = (read_json(Path(exp_dir) / tid / "result.json", {}) or {}).get("lost_node")
        if not node:
            continue
        res = read_trial_spec(Path(exp_dir) / tid / "spec.yaml").get("resources") or {}
        if node in (res.get("exclude") or []):
            continue
        part = str(res.get("partition") or "")
        if part not in usable_by_partition:
            usable_by_partition[part] = sched.usable_nodes(res)
        usable = usable_by_partition[part]
        avoid = {node, *(res.get("exclude") or [])}
        left = None if usable is None else [n for n in usable if n not in avoid]
        if left is not None and len(left) < int(res.get("nodes") or 1):
            where = f"partition {part}" if part else "the cluster"
            said.append(
                f"{tid}: node {node} was lost under it, but is not kept off: {where} has {len(left)} usable "
                f"node(s) besides it, and the trial needs {res.get('nodes') or 1}"
            )
            continue
        out[tid] = [node]
        said.append(f"{tid}: keeps off node {node}, lost under its last run (resources.exclude)")
    return out, said


def apply(trials: list, planned: dict) -> None:
    """Add the planned nodes to the trials' resources.exclude (what the scripts are rendered from)."""
    for trial in trials:
        for node in planned.get(trial.id, []):
            res = trial.data["resources"]
            res["exclude"] = [*(res.get("exclude") or []), node]
