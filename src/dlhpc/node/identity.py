"""Who this process is in the job: its ranks, the world, the nodes, from whichever launcher
started it. The one place that knows each scheduler's node-side variables.

Order: a submitit job (SLURM, or PBS through dlhpc's plugin; one process per rank) > a task that
`srun` started for `dlhpc run` inside an allocation (DLHPC_LAUNCHER=srun; one per rank) > a
process that torchrun or another launcher started (RANK, WORLD_SIZE...) > this machine alone,
where the runner starts every rank itself (`python -m dlhpc.node --nproc N`).
"""

import os
import socket
from dataclasses import dataclass, field


@dataclass
class Identity:
    rank: int = 0  # the global rank of this process's first rank
    local_rank: int = 0
    world_size: int = 1
    num_nodes: int = 1
    node_rank: int = 0
    hostnames: list = field(default_factory=lambda: [socket.gethostname()])
    job_id: str = ""
    restart: int = 0
    launcher: str = "single"
    ranks_here: int = 1  # ranks this process starts (all of them on one machine, else one)
    # whether the job's step waits on for a lost node's part of it (SLURM's srun does, until the
    # scheduler declares the node failed): the runner that saw the loss must end the job itself
    step_outlives_lost_node: bool = False

    @property
    def local_world_size(self) -> int:
        return max(1, self.world_size // max(1, self.num_nodes))


def detect(nproc: int = 1) -> Identity:
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or os.environ.get("DLHPC_RESTART_COUNT") or 0)
    if os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "pbs"):
        return _submitit(restart)
    if os.environ.get("DLHPC_LAUNCHER") == "srun":  # `dlhpc run` inside a SLURM allocation
        return _srun(restart)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return Identity(
            int(os.environ["RANK"]),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("GROUP_WORLD_SIZE") or os.environ.get("DLHPC_NUM_NODES") or 1),
            int(os.environ.get("GROUP_RANK") or 0),
            [os.environ.get("MASTER_ADDR", "127.0.0.1")],
            os.environ.get("DLHPC_JOB_ID", ""),
            restart,
            "env",
        )
    n = max(1, nproc)
    return Identity(world_size=n, job_id=os.environ.get("DLHPC_JOB_ID", ""), restart=restart, ranks_here=n)


def _submitit(restart: int) -> Identity:
    import submitit

    env = submitit.JobEnvironment()
    return Identity(
        env.global_rank,
        env.local_rank,
        env.num_tasks,
        env.num_nodes,
        env.node,
        list(env.hostnames),
        str(env.job_id),
        restart,
        "submitit-" + env.cluster,
        step_outlives_lost_node=env.cluster == "slurm",
    )


def _srun(restart: int) -> Identity:
    from dlhpc.hostlist import expand_hostlist

    return Identity(
        int(os.environ["SLURM_PROCID"]),
        int(os.environ.get("SLURM_LOCALID", 0)),
        int(os.environ["SLURM_NTASKS"]),
        int(os.environ.get("SLURM_STEP_NUM_NODES") or 1),
        int(os.environ.get("SLURM_NODEID") or 0),
        expand_hostlist(os.environ.get("SLURM_STEP_NODELIST", "")) or [socket.gethostname()],
        os.environ.get("DLHPC_JOB_ID") or os.environ.get("SLURM_JOB_ID", ""),
        restart,
        "srun",
    )


def node_name() -> str:
    # SLURM names the node (two slurmd on one host have different names); else the hostname
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()
