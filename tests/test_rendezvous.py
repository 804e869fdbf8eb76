"""Rendezvous of multi-node ranks: rank 0 publishes the addresses it can be reached at; the
others connect to the first that answers, and fail in bounded time naming what they tried.
(The two-host SLURM test proves it across real addresses; these are the faults.)"""

import json
import socket
import time

import pytest

from dlhpc.node import rendezvous
from dlhpc.node.identity import Identity
from dlhpc.train import dist as dist_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def publish(trial_dir, port, addresses, job="77"):
    (trial_dir / f".rendezvous-{job}-0").write_text(json.dumps({"port": port, "addresses": addresses, "node": "n1"}))
    return Identity(rank=1, world_size=2, num_nodes=2, hostnames=["n1", "n2"], job_id=job, launcher="test")


def test_unreachable_rank0_fails_in_bounded_time_naming_the_address(tmp_path, budget):
    port = closed_port()
    denv = publish(tmp_path, port, ["127.0.0.1"])
    t0 = time.monotonic()
    with pytest.raises(rendezvous.RendezvousError) as err:
        rendezvous.meet(denv, tmp_path, timeout_s=60, connect_s=2)
    elapsed = time.monotonic() - t0
    assert elapsed < budget(10), f"gave up after {elapsed:.1f} s"
    assert f"127.0.0.1:{port}" in str(err.value) and "could not reach rank 0" in str(err.value)


def test_rank0_never_publishing_fails_naming_the_file(tmp_path):
    denv = Identity(rank=1, world_size=2, hostnames=["n1", "n2"], job_id="78", launcher="test")
    with pytest.raises(rendezvous.RendezvousError, match=r"did not publish its address in .*\.rendezvous-78-0"):
        rendezvous.meet(denv, tmp_path, timeout_s=1)


def test_first_address_that_answers_is_used(tmp_path):
    import torch.distributed as dist

    master = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)
    denv = publish(tmp_path, master.port, ["no-such-host.invalid", "127.0.0.1"])
    meeting = rendezvous.meet(denv, tmp_path, timeout_s=10, connect_s=5)
    assert meeting.address == f"127.0.0.1:{master.port}"


def test_single_node_job_meets_on_loopback():
    denv = Identity(rank=0, world_size=4, hostnames=["n1"])
    assert rendezvous.advertised_addresses(denv)[0] == "127.0.0.1"


def test_site_address_comes_first(monkeypatch):
    monkeypatch.setenv("DLHPC_RENDEZVOUS_ADDR", "ib0-n1")
    denv = Identity(rank=0, world_size=2, hostnames=["n1", "n2"])
    assert rendezvous.advertised_addresses(denv)[0] == "ib0-n1"


def _leave_worker(rank, port, out_dir):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if rank == 1:  # a rank slow to tear down its part, after the barrier
        destroy = dist.destroy_process_group

        def slow_destroy(*args, **kwargs):
            time.sleep(1.0)
            destroy(*args, **kwargs)

        dist.destroy_process_group = slow_destroy
    dist_env.leave_process_group()
    (out_dir / f"left-{rank}").write_text(repr(time.time()))


def test_rank0_hosting_the_store_leaves_last(tmp_path):
    # seen once in CI: a finished rank aborted while tearing down gloo as its peers exited
    import torch.multiprocessing as mp

    mp.start_processes(_leave_worker, args=(closed_port(), tmp_path), nprocs=2, join=True, start_method="spawn")
    left = {rank: float((tmp_path / f"left-{rank}").read_text()) for rank in (0, 1)}
    assert left[0] >= left[1] - 0.05, left


def listening_addresses(port: int) -> set[str]:
    """The local addresses of TCP sockets listening on `port` (/proc/net/tcp, IPv4)."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if int(hexport, 16) == port and state == "0A":
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def test_a_single_node_store_listens_on_loopback_only(tmp_path):
    denv = Identity(rank=0, world_size=2, hostnames=["n1"], job_id="81", launcher="test")
    meeting = rendezvous.meet(denv, tmp_path, timeout_s=5)
    assert listening_addresses(meeting.port) == {"127.0.0.1"}
    del meeting
