"""Who am I in the job: rank, world size and rendezvous, from whichever launcher started us.

Order: a submitit job (SLURM, or PBS through dlhpc's plugin) > ranks that `srun` started for
`dlhpc run` inside an allocation (DLHPC_LAUNCHER=srun) > torchrun-style variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; also set by `python -m dlhpc.train
--nproc N`) > a single process.

Under submitit no fixed port is used: rank 0 binds a TCPStore on a free port and publishes
host:port in the trial directory (a shared filesystem, which the job needs anyway); the other
ranks read it. Two jobs on one node therefore never collide on a port.
"""

import json
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
        from dlhpc.hostlist import expand_hostlist

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


def init_process_group(denv: DistEnv, backend: str, trial_dir: Path, timeout_s: float = 300) -> str:
    """Join the job's process group; returns the rendezvous address (host:port) the ranks used."""
    import datetime

    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    if denv.world_size == 1:
        return ""
    if denv.launcher == "env":
        dist.init_process_group(
            backend, init_method="env://", rank=denv.rank, world_size=denv.world_size, timeout=timeout
        )
        return f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    store, address = _published_store(denv, trial_dir, timeout_s)
    _pin_gloo_interface(denv, address.rsplit(":", 1)[0])
    dist.init_process_group(backend, store=store, rank=denv.rank, world_size=denv.world_size, timeout=timeout)
    return address


class RendezvousError(RuntimeError):
    pass


def _single_node(denv: DistEnv) -> bool:
    return len(set(denv.hostnames or [])) <= 1


def route_source(host: str) -> str | None:
    """This machine's address on the interface that routes to `host` (no packet is sent: a UDP
    connect only asks the kernel for the route)."""
    try:
        target = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def advertised_addresses(denv: DistEnv) -> list[str]:
    """Where the other ranks can reach rank 0, best first. A name alone is not enough: on some
    clusters a node's hostname resolves to 127.0.1.1, or to an interface the others cannot reach.
    So first the address of the interface that routes to another node of the job (found from the
    scheduler's node list, no name service needed), then the node's name from that list, then the
    hostname. A site can put its own first with DLHPC_RENDEZVOUS_ADDR (e.g. the InfiniBand address)."""
    candidates = [os.environ.get("DLHPC_RENDEZVOUS_ADDR", "")]
    nodes = list(dict.fromkeys(denv.hostnames or []))
    if _single_node(denv):
        candidates.append("127.0.0.1")
    else:
        here = nodes[0]
        for peer in nodes[1:]:
            addr = route_source(peer)
            if addr and not addr.startswith("127."):
                candidates.append(addr)
                break
        candidates.append(here)
    candidates.append(socket.gethostname())
    return [c for c in dict.fromkeys(candidates) if c]


_LISTENERS: list = []


def _listening_store(address: str, world_size: int, timeout):
    """A master TCPStore listening on `address` alone. TCPStore itself listens on every interface
    whatever host it is given, so the socket is bound here and handed over (master_listen_fd)."""
    import torch.distributed as dist

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    store = dist.TCPStore(
        address,
        port,
        world_size,
        is_master=True,
        timeout=timeout,
        wait_for_workers=False,
        master_listen_fd=sock.fileno(),
    )
    _LISTENERS.append(sock)  # the store serves on this descriptor: keep it open for the process's life
    return store


def bind_address(denv: DistEnv) -> str:
    """Where rank 0's store listens: the loopback when every rank is on this node (nobody on the
    network can reach it, whatever the login node's firewall), the site's DLHPC_RENDEZVOUS_ADDR
    when set, else every interface (the other nodes' route to this one is found by trying)."""
    if _single_node(denv):
        return "127.0.0.1"
    return os.environ.get("DLHPC_RENDEZVOUS_ADDR") or "0.0.0.0"


def _reach(addresses: list[str], port: int, deadline: float) -> tuple[str | None, list[str]]:
    """The first address whose port accepts a TCP connection; retried until the deadline (rank 0
    listens before it publishes, so a refusal or timeout means that address is not the way)."""
    tried = {}
    while True:
        for host in addresses:
            try:
                with socket.create_connection((host, port), timeout=min(5.0, max(0.5, deadline - time.monotonic()))):
                    return host, []
            except OSError as exc:
                tried[host] = f"{host}:{port} ({exc.strerror or type(exc).__name__})"
        if time.monotonic() > deadline:
            return None, list(tried.values())
        time.sleep(1.0)


def _published_store(denv: DistEnv, trial_dir: Path, timeout_s: float, connect_s: float = 30):
    """Rank 0 binds a TCPStore on a free port and publishes its addresses and port in the trial
    directory; the others wait for the file, then connect to the first address that answers, or
    fail within `connect_s` naming every address they tried."""
    import datetime

    import torch.distributed as dist

    tag = f"{denv.job_id or 'job'}-{os.environ.get('DLHPC_LAUNCH_ID') or denv.restart}".replace("/", "_")
    path = Path(trial_dir) / f".rendezvous-{tag}"
    timeout = datetime.timedelta(seconds=timeout_s)
    if denv.rank == 0:
        for stale in Path(trial_dir).glob(".rendezvous-*"):
            stale.unlink(missing_ok=True)
        addresses = advertised_addresses(denv)
        store = _listening_store(bind_address(denv), denv.world_size, timeout)
        if _single_node(denv):
            addresses = ["127.0.0.1"]  # bound to the loopback: the only address that answers
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": store.port, "addresses": addresses, "node": node_name()}) + "\n")
        os.replace(tmp, path)
        return store, f"{addresses[0]}:{store.port}"
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise RendezvousError(
                f"rank {denv.rank} on {node_name()}: rank 0 did not publish its address in {path} within "
                f"{timeout_s:.0f} s (did rank 0 start? see its log)"
            )
        time.sleep(0.1)
    published = json.loads(path.read_text())
    port, addresses = int(published["port"]), list(published["addresses"])
    host, tried = _reach(addresses, port, time.monotonic() + connect_s)
    if host is None:
        raise RendezvousError(
            f"rank {denv.rank} on {node_name()} could not reach rank 0 (node {published.get('node')}) within "
            f"{connect_s:.0f} s; tried {', '.join(tried)}. The nodes must reach each other over TCP; a site "
            f"can name the address to use with DLHPC_RENDEZVOUS_ADDR"
        )
    store = dist.TCPStore(host, port, denv.world_size, is_master=False, timeout=timeout)
    return store, f"{host}:{port}"


def _pin_gloo_interface(denv: DistEnv, rendezvous_host: str) -> None:
    """gloo binds to whatever this node's hostname resolves to (127.0.1.1 on some clusters, and
    then the other nodes cannot connect): unless the site chose, bind to the interface that routes
    to rank 0's address (the loopback when the whole job is on one node)."""
    if os.environ.get("GLOO_SOCKET_IFNAME"):
        return
    name = "lo" if _single_node(denv) else interface_of(route_source(rendezvous_host) or "")
    if name:
        os.environ["GLOO_SOCKET_IFNAME"] = name


def interface_of(address: str) -> str | None:
    """The name of the interface that holds an IPv4 address (Linux: SIOCGIFADDR per interface)."""
    if not address:
        return None
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            if socket.inet_ntoa(packed[20:24]) == address:
                return name
    return None


def local_address(denv: DistEnv, rendezvous: str) -> str:
    """This rank's address on the way to rank 0 (recorded per rank in result.json)."""
    host = rendezvous.rsplit(":", 1)[0] if rendezvous else ""
    if denv.rank == 0 or not host:
        return host or "127.0.0.1"
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
    # SLURM names the node (two slurmd on one host have different names); else the hostname
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def gather_node_names(denv: DistEnv, address: str = "") -> tuple[list, list]:
    """The node each rank runs on, and its address on the way to rank 0, in rank order (shown in
    result.json as rank_nodes and rank_addresses)."""
    if denv.world_size == 1:
        return [node_name()], [address or "127.0.0.1"]
    import torch.distributed as dist

    pairs = [None] * denv.world_size
    dist.all_gather_object(pairs, (node_name(), address))
    return [p[0] for p in pairs], [p[1] for p in pairs]
