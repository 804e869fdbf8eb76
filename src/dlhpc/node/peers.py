"""Whether the other nodes of a job are still there: each node's runner keeps one TCP line to rank
0's runner (the hub) and both send a byte every few seconds. A node is **lost** when its line
closes without a goodbye (the node died, or every process of the job on it was killed), or when
nothing came from it for `timeout_s` (its link is down, or it hangs). The runner that sees it
ends its own ranks and records which node was lost: a surviving rank blocked in a collective
with the lost one never waits for the walltime (docs/faults.md).

A runner told to stop (the time-limit warning, a cancel) says goodbye first, so a peer that sees
its line close then does not take it for a lost node. Only the hub and its spokes talk: no rank
program, no torch, one thread per runner. The hub listens on the job's network, where other
users are too: a line counts only once its hello carries the job's token, which rank 0's runner
published in the trial's private folder with its port (anyone else's connection is closed).
"""

import hmac
import secrets
import select
import socket
import threading
import time

HELLO_END = b"\n"
BEAT = b"."
BYE = b"B"


class PeerWatch:
    """One runner's lines to the others: the hub holds one per other node, a spoke one to the hub.
    `on_lost(node, words)` is called once, from the watch's thread, for the first node lost."""

    def __init__(self, here: str, timeout_s: float, on_lost, token: str | None = None):
        self.here, self.timeout_s, self.on_lost = here, float(timeout_s), on_lost
        self.token = token or secrets.token_hex(16)  # (the hub's, published; a spoke is given it)
        self.interval_s = max(0.5, min(5.0, self.timeout_s / 6))
        self.lines: dict[socket.socket, dict] = {}  # socket -> {"node", "seen", "bye"}
        self.listener: socket.socket | None = None
        self.lost: tuple[str, str, float] | None = None  # (node, words, when)
        self.leaving = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- the two ends ---------------------------------------------------------------------------

    def serve(self, address: str) -> int:
        """As the hub (rank 0's runner): listen on `address`; the port to publish."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((address, 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self._start()
        return self.listener.getsockname()[1]

    def join(self, host: str, port: int, hub_node: str, connect_s: float = 30) -> None:
        """As a spoke: one line to the hub at host:port, introduced by this node's name."""
        sock = socket.create_connection((host, port), timeout=connect_s)
        sock.sendall(f"{self.token} {self.here}".encode() + HELLO_END)
        sock.setblocking(False)
        self.lines[sock] = {"node": hub_node, "seen": time.monotonic(), "bye": False, "hello": b""}
        self._start()

    # ---- the watch ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dlhpc-peers", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        next_beat = 0.0
        while not self.leaving:
            now = time.monotonic()
            if now >= next_beat:
                self._send_all(BEAT)
                next_beat = now + self.interval_s
            readable = list(self.lines) + ([self.listener] if self.listener is not None else [])
            try:
                ready, _, _ = select.select(readable, [], [], min(self.interval_s, 1.0))
            except (OSError, ValueError):  # (a line closed by stop() while we waited)
                continue
            for sock in ready:
                self._accept() if sock is self.listener else self._read(sock)
            self._judge_silence()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        with self._lock:
            self.lines[sock] = {"node": None, "seen": time.monotonic(), "bye": False, "hello": b""}

    def _read(self, sock: socket.socket) -> None:
        line = self.lines.get(sock)
        if line is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._closed(sock, line)
            return
        line["seen"] = time.monotonic()
        if line["node"] is None:  # the spoke's hello: the job's token and its node's name, then beats
            line["hello"] += data
            if HELLO_END not in line["hello"]:
                if len(line["hello"]) > 1024:
                    self._drop(sock)
                return
            hello, data = line["hello"].split(HELLO_END, 1)
            token, _, name = hello.decode(errors="replace").partition(" ")
            if not hmac.compare_digest(token, self.token) or not name:
                self._drop(sock)  # (not one of this job's runners: it never counts)
                return
            line["node"] = name[:255]
        if BYE in data:
            line["bye"] = True

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self.lines.pop(sock, None)
        sock.close()

    def _closed(self, sock: socket.socket, line: dict) -> None:
        with self._lock:
            del self.lines[sock]
        sock.close()
        if not line["bye"] and line["node"] is not None:
            self._declare(
                line["node"],
                "its runner's connection closed without a goodbye (the node died, or every process of the "
                "job on it was killed)",
            )

    def _judge_silence(self) -> None:
        now = time.monotonic()
        for line in list(self.lines.values()):
            if line["node"] is not None and not line["bye"] and now - line["seen"] > self.timeout_s:
                self._declare(
                    line["node"],
                    f"nothing came from it for {now - line['seen']:.0f} s (resources.timeouts.node "
                    f"{self.timeout_s:g} s: its network link is down, or the node hangs)",
                )

    def _declare(self, node: str, words: str) -> None:
        with self._lock:
            if self.lost is not None or self.leaving:
                return
            self.lost = (node, words, time.time())
        self.on_lost(node, words)

    def _send_all(self, data: bytes) -> None:
        with self._lock:  # (goodbye() sends from the main thread while the watch's may add a line)
            socks = list(self.lines)
        for sock in socks:
            try:
                sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass  # a full buffer: the peer reads slowly; silence decides, not this
            except OSError:
                pass  # its close is seen by the next read

    # ---- the end --------------------------------------------------------------------------------

    def verdict(self, wait_s: float = 0.0) -> tuple[str, str, float] | None:
        """The node lost, if any; waits up to wait_s for a line's close to be seen (a rank that
        failed because its peer vanished can end a moment before the runner sees the line close)."""
        deadline = time.monotonic() + wait_s
        while self.lost is None and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.05)
        return self.lost

    def goodbye(self) -> None:
        """This runner ends on purpose (its ranks finished, failed on their own, or were told to
        stop): the others are not to take its closing line for a lost node."""
        with self._lock:
            self.leaving = True
        self._send_all(BYE)

    def stop(self) -> None:
        self.goodbye()
        if self._thread is not None:
            self._thread.join(timeout=3)
        with self._lock:
            socks, self.lines = list(self.lines), {}
        for sock in socks:
            sock.close()
        if self.listener is not None:
            self.listener.close()
