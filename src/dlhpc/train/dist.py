"""Who am I in the job: rank, world size and rendezvous, from whichever launcher started us.

Order: a submitit job (SLURM, or PBS through dlhpc's plugin) > ranks that `srun` started for
`dlhpc run` inside an allocation (DLHPC_LAUNCHER=srun) > torchrun-style variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; also set by `python -m dlhpc.train
--nproc N`) > a single process.

Under submitit no fixed port is used: rank 0 binds a TCPStore on a free port and publishes
host:port in the trial directory (a shared filesystem, which the job needs anyway); the other
ranks read it. Two jobs on one node therefore never collide on a port.
"""

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    num_nodes: int = 1
    hostnames: list = field(default_factory=lambda: [socket.gethostname()])
    job_id: str = ""
    restart: int = 0
    launcher: str = "single"


def detect() -> DistEnv:
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or os.environ.get("DLHPC_RESTART_COUNT") or 0)
    if os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "pbs"):
        import submitit

        env = submitit.JobEnvironment()
        return DistEnv(
            env.global_rank,
            env.local_rank,
            env.num_tasks,
            env.num_nodes,
            list(env.hostnames),
            str(env.job_id),
            restart,
            "submitit-" + env.cluster,
        )
    if os.environ.get("DLHPC_LAUNCHER") == "srun":  # `dlhpc run` inside a SLURM allocation
        from dlhpc.schedulers.slurm import expand_hostlist

        return DistEnv(
            int(os.environ["SLURM_PROCID"]),
            int(os.environ.get("SLURM_LOCALID", 0)),
            int(os.environ["SLURM_NTASKS"]),
            int(os.environ.get("SLURM_STEP_NUM_NODES") or 1),
            expand_hostlist(os.environ.get("SLURM_STEP_NODELIST", "")) or [socket.gethostname()],
            os.environ.get("DLHPC_JOB_ID") or os.environ.get("SLURM_JOB_ID", ""),
            restart,
            "srun",
        )
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistEnv(
            int(os.environ["RANK"]),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("DLHPC_NUM_NODES", 1)),
            [os.environ.get("MASTER_ADDR", "127.0.0.1")],
            os.environ.get("DLHPC_JOB_ID", ""),
            restart,
            "env",
        )
    return DistEnv(job_id=os.environ.get("DLHPC_JOB_ID", ""), restart=restart)


def init_process_group(denv: DistEnv, backend: str, trial_dir: Path, timeout_s: float = 300):
    import datetime

    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    if denv.world_size == 1:
        return
    if denv.launcher == "env":
        dist.init_process_group(
            backend, init_method="env://", rank=denv.rank, world_size=denv.world_size, timeout=timeout
        )
        return
    store = _published_store(denv, trial_dir, timeout_s)
    dist.init_process_group(backend, store=store, rank=denv.rank, world_size=denv.world_size, timeout=timeout)


def _published_store(denv: DistEnv, trial_dir: Path, timeout_s: float):
    import datetime

    import torch.distributed as dist

    tag = f"{denv.job_id or 'job'}-{denv.restart}".replace("/", "_")
    path = Path(trial_dir) / f".rendezvous-{tag}"
    timeout = datetime.timedelta(seconds=timeout_s)
    if denv.rank == 0:
        for stale in Path(trial_dir).glob(".rendezvous-*"):
            stale.unlink(missing_ok=True)
        store = dist.TCPStore("0.0.0.0", 0, denv.world_size, is_master=True, timeout=timeout, wait_for_workers=False)
        host = denv.hostnames[0] if denv.hostnames else socket.gethostname()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{host}:{store.port}\n")
        os.replace(tmp, path)
        return store
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {denv.rank}: rank 0 did not publish {path} within {timeout_s:.0f} s")
        time.sleep(0.1)
    host, port = path.read_text().strip().rsplit(":", 1)
    return dist.TCPStore(host, int(port), denv.world_size, is_master=False, timeout=timeout)


def destroy_process_group():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def node_name() -> str:
    # SLURM names the node (two slurmd on one host have different names); else the hostname
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def gather_node_names(denv: DistEnv) -> list:
    """The node each rank runs on, in rank order (shown in result.json as rank_nodes)."""
    if denv.world_size == 1:
        return [node_name()]
    import torch.distributed as dist

    names = [None] * denv.world_size
    dist.all_gather_object(names, node_name())
    return names
