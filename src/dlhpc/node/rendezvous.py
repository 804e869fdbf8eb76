"""Where the ranks of a job meet: rank 0's runner hosts the rendezvous store (a TCPStore, as
torchrun's agent does) on a free port, and publishes its addresses and port in the trial
directory (a shared filesystem, which the job needs anyway); the other ranks' runners read it and
keep the first address that answers. Each rank's program then finds the store at MASTER_ADDR:
MASTER_PORT with TORCHELASTIC_USE_AGENT_STORE=True, so `init_process_group()` (env://) works
unchanged. No fixed port: two jobs on one node never collide.
"""

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from dlhpc.fsutil import atomic_write_text
from dlhpc.node.identity import Identity, node_name


class RendezvousError(RuntimeError):
    pass


def _single_node(denv: Identity) -> bool:
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


def advertised_addresses(denv: Identity) -> list[str]:
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


def free_port(address: str) -> int:
    """A port nobody listens on now (for a single rank's own store; the kernel does not hand the
    same ephemeral port out again at once)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def bind_address(denv: Identity) -> str:
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


@dataclass
class Meeting:
    """Where this node's ranks find the store: MASTER_ADDR and MASTER_PORT."""

    host: str
    port: int
    store: object = None  # rank 0's: what serves the store (the keeper process), until the end
    published: dict | None = None  # what rank 0 published (the others': its node, its peers port)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def meet(
    denv: Identity, trial_dir: Path, host_store=None, timeout_s: float = 300, connect_s: float = 30, also=None
) -> Meeting:
    """Rank 0 hosts a TCPStore on a free port (`host_store(address) -> (what serves it, port)`;
    by default in this process) and publishes its addresses and port in the trial directory (with
    `also`, more it publishes: its peers port); the others wait for the file, then keep the first
    address that accepts a connection, or fail within `connect_s` naming every address they tried."""
    import datetime

    if host_store is None:

        def host_store(address):
            store = _listening_store(address, None, datetime.timedelta(seconds=timeout_s))
            return store, store.port

    tag = f"{denv.job_id or 'job'}-{os.environ.get('DLHPC_LAUNCH_ID') or denv.restart}".replace("/", "_")
    path = Path(trial_dir) / f".rendezvous-{tag}"
    if denv.rank == 0:
        for stale in Path(trial_dir).glob(".rendezvous-*"):
            stale.unlink(missing_ok=True)
        addresses = advertised_addresses(denv)
        store, port = host_store(bind_address(denv))
        if _single_node(denv):
            addresses = ["127.0.0.1"]  # bound to the loopback: the only address that answers
        # private whatever `share` says (the job's umask is 027 then): it may carry the node line's token
        published = json.dumps({**(also or {}), "port": port, "addresses": addresses, "node": node_name()}) + "\n"
        atomic_write_text(path, published, mode=0o600)
        return Meeting(addresses[0], port, store)
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
    return Meeting(host, port, published=published)


def gloo_interface(denv: Identity, rendezvous_host: str) -> str | None:
    """gloo binds to whatever this node's hostname resolves to (127.0.1.1 on some clusters, and
    then the other nodes cannot connect): the interface that routes to rank 0's address (the
    loopback when the whole job is on one node), unless the site chose (GLOO_SOCKET_IFNAME)."""
    if os.environ.get("GLOO_SOCKET_IFNAME"):
        return os.environ["GLOO_SOCKET_IFNAME"]
    return "lo" if _single_node(denv) else interface_of(route_source(rendezvous_host) or "")


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
