"""The trainer's rank in the job, read from the torchrun contract that dlhpc's runner starts
every rank with (node/contract.py; torchrun's own variables work too), and joining and leaving
the process group. Where the ranks meet is the runner's business (node/rendezvous.py): here it
is MASTER_ADDR:MASTER_PORT, the env:// way.
"""

import os
import time

from dlhpc.node.identity import Identity

# The trainer's view of its rank is the runner's Identity, filled from the torchrun contract.
DistEnv = Identity


def detect() -> DistEnv:
    """This rank, from the torchrun contract its runner started it with (node/contract.py), or
    from torchrun itself; without RANK, one process alone."""
    env = os.environ
    restart = int(env.get("TORCHELASTIC_RESTART_COUNT") or env.get("DLHPC_RESTART_COUNT") or 0)
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistEnv(job_id=env.get("DLHPC_JOB_ID", ""), restart=restart)
    nodes = [h for h in env.get("DLHPC_NODELIST", "").split(",") if h] or [env.get("MASTER_ADDR", "127.0.0.1")]
    return DistEnv(
        rank=int(env["RANK"]),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        world_size=int(env["WORLD_SIZE"]),
        num_nodes=int(env.get("GROUP_WORLD_SIZE") or env.get("DLHPC_NUM_NODES") or 1),
        node_rank=int(env.get("GROUP_RANK") or 0),
        hostnames=nodes,
        job_id=env.get("DLHPC_JOB_ID", ""),
        restart=restart,
        launcher="env",
    )


def init_process_group(denv: DistEnv, backend: str, timeout_s: float = 300) -> str:
    """Join the job's process group the torchrun way (env://); returns the rendezvous address."""
    import datetime

    import torch.distributed as dist

    if denv.world_size == 1:
        return ""
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, init_method="env://", rank=denv.rank, world_size=denv.world_size, timeout=timeout)
    return f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"


def local_address(denv: DistEnv, rendezvous: str) -> str:
    """This rank's address on the way to rank 0 (recorded per rank in result.json)."""
    host = rendezvous.rsplit(":", 1)[0] if rendezvous else ""
    if denv.rank == 0 or not host:
        return host or "127.0.0.1"
    from dlhpc.node.rendezvous import route_source

    return route_source(host) or host


def destroy_process_group():
    """Leave at once (after a failure: the other ranks may be gone, so no barrier)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


LEFT_KEY = "dlhpc/ranks_left"


def leave_process_group(wait_s: float = 30.0):
    """Leave in order after a run every rank finished: all ranks meet at a barrier, then each
    tears down its part, and rank 0, which hosts the rendezvous store, waits (at most wait_s)
    until the others say through the store that they are done before it exits. A rank whose
    peers and store host vanish while it is still tearing down gloo can abort ("terminate called
    without an active exception", seen once in CI after a completed 2-rank run)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    world, rank = dist.get_world_size(), dist.get_rank()
    if world == 1:
        dist.destroy_process_group()
        return
    store = dist.distributed_c10d._get_default_store()  # held past the group's end
    dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        store.add(LEFT_KEY, 1)
        return
    deadline = time.monotonic() + wait_s
    while store.add(LEFT_KEY, 0) < world - 1 and time.monotonic() < deadline:
        time.sleep(0.02)


def node_name() -> str:
    from dlhpc.node.identity import node_name as name

    return name()


def gather_node_names(denv: DistEnv, address: str = "") -> tuple[list, list]:
    """The node each rank runs on, and its address on the way to rank 0, in rank order (shown in
    result.json as rank_nodes and rank_addresses)."""
    if denv.world_size == 1:
        return [node_name()], [address or "127.0.0.1"]
    import torch.distributed as dist

    pairs = [None] * denv.world_size
    dist.all_gather_object(pairs, (node_name(), address))
    return [p[0] for p in pairs], [p[1] for p in pairs]
