"""node/peers.py: how a node's runner sees another node of its job lost, over loopback sockets
(the same code that runs between the test hosts in tests/live/test_faults_live.py)."""

import socket
import time

import pytest

from dlhpc.node.peers import PeerWatch


def hub_and_spoke(timeout_s=30.0):
    lost_by_hub, lost_by_spoke = [], []
    hub = PeerWatch("n1", timeout_s, lambda node, words: lost_by_hub.append((node, words)))
    port = hub.serve("127.0.0.1")
    spoke = PeerWatch("n2", timeout_s, lambda node, words: lost_by_spoke.append((node, words)), token=hub.token)
    spoke.join("127.0.0.1", port, "n1")
    deadline = time.monotonic() + 5
    while not any(line["node"] == "n2" for line in hub.lines.values()):
        assert time.monotonic() < deadline, "the spoke never said hello"
        time.sleep(0.02)
    return hub, spoke, lost_by_hub, lost_by_spoke


def test_a_spoke_that_says_goodbye_is_not_lost():
    hub, spoke, lost_by_hub, _ = hub_and_spoke()
    spoke.stop()  # (its ranks finished: goodbye, then the line closes)
    time.sleep(1.0)
    assert hub.verdict() is None and lost_by_hub == []
    hub.stop()


@pytest.mark.perf
def test_a_silent_peer_is_lost_after_the_node_timeout(budget):
    hub, spoke, lost_by_hub, lost_by_spoke = hub_and_spoke(timeout_s=2.0)
    spoke.leaving = True  # its watch stops: no more beats, the line stays open (a link down, a hung node)
    spoke._thread.join(timeout=5)
    started = time.monotonic()
    verdict = hub.verdict(wait_s=10)
    assert verdict is not None and verdict[0] == "n2" and "nothing came from it for" in verdict[1], verdict
    took = time.monotonic() - started  # (its last beat came at most one interval before `started`)
    # not before the timeout; after it, within one watch cycle (scaled to this machine's speed)
    assert 2.0 - spoke.interval_s <= took < 2.0 + budget(2.0), took
    for sock in list(spoke.lines):
        sock.close()
    hub.stop()


def test_the_hub_going_away_is_seen_by_the_spoke():
    hub, spoke, _, lost_by_spoke = hub_and_spoke()
    for sock in list(hub.lines):  # (the hub's process killed: its lines close without a word)
        sock.shutdown(socket.SHUT_RDWR)
    assert spoke.verdict(wait_s=5) is not None and lost_by_spoke[0][0] == "n1"
    spoke.stop()
    hub.stop()


def test_a_connection_without_the_jobs_token_never_counts():
    lost = []
    hub = PeerWatch("n1", 60, lambda node, words: lost.append(node))
    port = hub.serve("127.0.0.1")
    for hello in (b"guess n2\n", b"n2\n", b"x" * 2000):  # (another user on the network, or noise)
        with socket.create_connection(("127.0.0.1", port)) as intruder:
            intruder.sendall(hello)
        time.sleep(0.3)
    assert hub.verdict(wait_s=2) is None and lost == []
    hub.stop()
