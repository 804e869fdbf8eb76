"""Rendezvous of multi-node ranks: rank 0 publishes the addresses it can be reached at; the
others connect to the first that answers, and fail in bounded time naming what they tried.
(The two-host SLURM test proves it across real addresses; these are the faults.)"""

import socket

import pytest

from conftest import publish
from dlhpc.node import rendezvous
from dlhpc.node.identity import Identity


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


def test_the_rendezvous_file_is_private_whatever_share_says(tmp_path):
    """Issue 33, finding 5: under `share: group` the job's umask is 027, and the file carrying the
    node line's token was group-readable: a group member could end the job."""
    import os
    import stat

    denv = Identity(rank=0, world_size=2, hostnames=["n1", "n2"], job_id="79", launcher="test")
    old = os.umask(0o027)
    try:
        rendezvous.meet(denv, tmp_path, host_store=lambda address: (None, 12345), also={"token": "t"})
    finally:
        os.umask(old)
    (published,) = tmp_path.glob(".rendezvous-79-*")
    assert stat.S_IMODE(published.stat().st_mode) == 0o600
