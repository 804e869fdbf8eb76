"""node/peers.py: how a node's runner sees another node of its job lost, over loopback sockets
(the same code that runs between the test hosts in tests/live/test_faults_live.py)."""

import subprocess
import sys
import time

from dlhpc.node.peers import PeerWatch


def test_a_spoke_whose_process_dies_is_lost_at_once_and_named():
    lost = []
    hub = PeerWatch("n1", 60, lambda node, words: lost.append(node))
    port = hub.serve("127.0.0.1")
    code = (
        "from dlhpc.node.peers import PeerWatch; import time; "
        f"PeerWatch('n2', 60, print, token={hub.token!r}).join('127.0.0.1', {port}, 'n1'); time.sleep(60)"
    )
    spoke = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while not any(line["node"] == "n2" for line in hub.lines.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        spoke.kill()  # (SIGKILL: no goodbye)
        killed = time.monotonic()
        assert hub.verdict(wait_s=5) is not None
        assert time.monotonic() - killed < 2 and lost == ["n2"]
    finally:
        spoke.kill()
        hub.stop()
