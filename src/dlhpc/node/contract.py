"""The environment every rank starts with: torchrun's variables, so a script written for torchrun
runs unchanged (`init_process_group()` with the default env://), and dlhpc's own (docs/own-code.md).

    RANK LOCAL_RANK WORLD_SIZE LOCAL_WORLD_SIZE GROUP_RANK GROUP_WORLD_SIZE ROLE_RANK
    ROLE_WORLD_SIZE ROLE_NAME MASTER_ADDR MASTER_PORT TORCHELASTIC_RUN_ID TORCHELASTIC_RESTART_COUNT
    TORCHELASTIC_MAX_RESTARTS TORCHELASTIC_USE_AGENT_STORE
    DLHPC_TRIAL_DIR DLHPC_TRIAL_ID DLHPC_PARAMS DLHPC_CHECKPOINT DLHPC_STOP_SIGNAL DLHPC_JOB_ID
    DLHPC_NODELIST DLHPC_NUM_NODES
"""

import json
import os
from pathlib import Path

CHECKPOINT = "checkpoint.pt"


def rank_environment(
    denv,
    local_rank: int,
    trial_dir: Path,
    params: dict,
    master: tuple[str, int] | None,
    *,
    stop_signal: str = "TERM",
    max_restarts: int = 0,
    gloo_interface: str | None = None,
    agent_store: bool = True,
    collective_timeout_s: float = 600,
) -> dict:
    """The variables one rank starts with, over this process's environment. `master` None: the
    rendezvous variables are the outer launcher's (torchrun started this process) and are kept."""
    global_rank = denv.node_rank * denv.local_world_size + local_rank if denv.ranks_here > 1 else denv.rank
    trial_dir = Path(trial_dir)
    run_id = f"{denv.job_id or 'job'}-{trial_dir.name}"
    env = {
        "RANK": global_rank,
        "LOCAL_RANK": local_rank if denv.ranks_here > 1 else denv.local_rank,
        "WORLD_SIZE": denv.world_size,
        "LOCAL_WORLD_SIZE": denv.local_world_size,
        "GROUP_RANK": denv.node_rank,
        "GROUP_WORLD_SIZE": denv.num_nodes,
        "ROLE_RANK": global_rank,
        "ROLE_WORLD_SIZE": denv.world_size,
        "ROLE_NAME": "default",
        "TORCHELASTIC_RUN_ID": run_id,
        "TORCHELASTIC_RESTART_COUNT": denv.restart,
        "TORCHELASTIC_MAX_RESTARTS": max_restarts,
        "DLHPC_TRIAL_DIR": trial_dir,
        "DLHPC_TRIAL_ID": trial_dir.name,
        "DLHPC_PARAMS": json.dumps(params, sort_keys=True),
        "DLHPC_CHECKPOINT": trial_dir / CHECKPOINT,
        "DLHPC_STOP_SIGNAL": stop_signal,
        "DLHPC_JOB_ID": denv.job_id,
        "DLHPC_NODELIST": ",".join(dict.fromkeys(denv.hostnames or [])),
        "DLHPC_NUM_NODES": denv.num_nodes,
        "DLHPC_RESTART_COUNT": denv.restart,
        "DLHPC_COLLECTIVE_TIMEOUT_S": f"{collective_timeout_s:g}",
        "PYTHONUNBUFFERED": "1",
    }
    if master is not None:  # the agent's store (the runner's keeper), or rank 0's own when alone
        env.update(MASTER_ADDR=master[0], MASTER_PORT=master[1], TORCHELASTIC_USE_AGENT_STORE=str(agent_store))
    if gloo_interface and not os.environ.get("GLOO_SOCKET_IFNAME"):
        env["GLOO_SOCKET_IFNAME"] = gloo_interface
    return {**os.environ, **{k: str(v) for k, v in env.items()}}
