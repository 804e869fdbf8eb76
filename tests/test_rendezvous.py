"""Rendezvous of multi-node ranks: rank 0 publishes the addresses it can be reached at; the
others connect to the first that answers, and fail in bounded time naming what they tried.
(The two-host SLURM test proves it across real addresses; these are the faults.)"""

import json
import socket
import time

import pytest

from dlhpc.train import dist as dist_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def publish(trial_dir, port, addresses, job="77"):
    (trial_dir / f".rendezvous-{job}-0").write_text(json.dumps({"port": port, "addresses": addresses, "node": "n1"}))
    return dist_env.DistEnv(rank=1, world_size=2, num_nodes=2, hostnames=["n1", "n2"], job_id=job, launcher="test")


def test_unreachable_rank0_fails_in_bounded_time_naming_the_address(tmp_path):
    port = closed_port()
    denv = publish(tmp_path, port, ["127.0.0.1"])
    t0 = time.monotonic()
    with pytest.raises(dist_env.RendezvousError) as err:
        dist_env._published_store(denv, tmp_path, timeout_s=60, connect_s=2)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"gave up after {elapsed:.1f} s"
    assert f"127.0.0.1:{port}" in str(err.value) and "could not reach rank 0" in str(err.value)


def test_rank0_never_publishing_fails_naming_the_file(tmp_path):
    denv = dist_env.DistEnv(rank=1, world_size=2, hostnames=["n1", "n2"], job_id="78", launcher="test")
    with pytest.raises(dist_env.RendezvousError, match=r"did not publish its address in .*\.rendezvous-78-0"):
        dist_env._published_store(denv, tmp_path, timeout_s=1)


def test_first_address_that_answers_is_used(tmp_path):
    import torch.distributed as dist

    master = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)
    denv = publish(tmp_path, master.port, ["no-such-host.invalid", "127.0.0.1"])
    store, address = dist_env._published_store(denv, tmp_path, timeout_s=10, connect_s=5)
    assert address == f"127.0.0.1:{master.port}"
    store.set("k", "v")
    assert master.get("k") == b"v"


def test_single_node_job_meets_on_loopback():
    denv = dist_env.DistEnv(rank=0, world_size=4, hostnames=["n1"])
    assert dist_env.advertised_addresses(denv)[0] == "127.0.0.1"


def test_site_address_comes_first(monkeypatch):
    monkeypatch.setenv("DLHPC_RENDEZVOUS_ADDR", "ib0-n1")
    denv = dist_env.DistEnv(rank=0, world_size=2, hostnames=["n1", "n2"])
    assert dist_env.advertised_addresses(denv)[0] == "ib0-n1"
