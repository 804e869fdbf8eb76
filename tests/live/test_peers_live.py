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


# ---- issue 33: the hub authenticates within a deadline, bounded, and names only the job's nodes --


def watched_spoke(hub, port, name="n2"):
    """A real spoke in another process (killed later: no goodbye), once the hub has its hello."""
    import subprocess
    import sys

    code = (
        "from dlhpc.node.peers import PeerWatch; import time; "
        f"PeerWatch({name!r}, 60, print, token={hub.token!r}).join('127.0.0.1', {port}, 'n1'); time.sleep(120)"
    )
    spoke = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not any(line["node"] == name for line in list(hub.lines.values())):
        assert time.monotonic() < deadline, "the spoke never said hello"
        time.sleep(0.05)
    return spoke


def test_a_line_that_is_not_ascii_does_not_stop_the_hub():
    """Finding 4: one non-ASCII hello raised in the watch thread (str compare_digest), which died;
    a node that really died afterwards was never declared lost."""
    lost = []
    hub = PeerWatch("n1", 60, lambda node, words: lost.append(node), nodes=["n1", "n2"])
    port = hub.serve("0.0.0.0")
    with socket.create_connection(("127.0.0.1", port)) as stranger:
        stranger.sendall("é n2\n".encode())
        time.sleep(0.5)
    spoke = watched_spoke(hub, port)
    try:
        spoke.kill()
        assert hub.verdict(wait_s=5) is not None and lost == ["n2"], hub._thread.is_alive()
    finally:
        spoke.kill()
        hub.stop()


def test_a_hello_naming_a_node_outside_the_job_is_refused():
    """Finding 5: whoever had the token chose the 'lost' node's name (escape sequences reached the
    terminal, why and resources.exclude): a name not of the job's nodes is dropped, never declared."""
    lost = []
    hub = PeerWatch("n1", 60, lambda node, words: lost.append(node), nodes=["n1", "n2"])
    port = hub.serve("127.0.0.1")
    for name in ("n9", "\x1b[2J\x1b[31mn2", "n2;reboot"):
        with socket.create_connection(("127.0.0.1", port)) as line:
            line.sendall(hub.token.encode() + b" " + name.encode() + b"\n")
            time.sleep(0.3)
    time.sleep(0.5)
    assert lost == [] and hub.verdict() is None and hub.refused == 3
    hub.stop()


def test_idle_connections_are_closed_and_cannot_blind_the_hub(budget):
    """Finding 6: connections that never said hello stayed open; a thousand of them pushed select()
    past FD_SETSIZE and the hub spun, never declaring a node that died. Here 1,100 silent lines
    (their descriptors above 1024 in this process), then a real spoke dies: it is declared lost
    at once, and the silent lines are closed within the hello deadline."""
    import resource

    from dlhpc.node import peers

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"needs 4096 open files (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    lost = []
    hub = PeerWatch("n1", 60, lambda node, words: lost.append(node), nodes=["n1", "n2"])
    port = hub.serve("127.0.0.1")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(1100)]
    spoke = None
    try:
        spoke = watched_spoke(hub, port)
        spoke.kill()
        killed = time.monotonic()
        assert hub.verdict(wait_s=budget(5)) is not None and lost == ["n2"]
        assert time.monotonic() - killed < budget(2)
        time.sleep(peers.HELLO_TIMEOUT_S + budget(2))
        assert sum(1 for line in list(hub.lines.values()) if line["node"] is None) == 0
        for sock in silent[:50]:  # the hub closed them: a read sees the end (or a reset)
            sock.settimeout(1)
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        if spoke is not None:
            spoke.kill()
        for sock in silent:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        hub.stop()
