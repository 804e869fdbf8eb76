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
published in the trial's folder with its port, in a file only the job's user may read (anyone
else's connection is closed). A line gets HELLO_TIMEOUT_S to say that hello, at most MAX_UNPROVEN
wait at once, and the name it gives must be one of the job's nodes before it is ever shown
(docs/security.md: the node line).
"""

import hmac
import re
import secrets
import selectors
import socket
import threading
import time

HELLO_END = b"\n"
BEAT = b"."
BYE = b"B"
HELLO_TIMEOUT_S = 5.0  # a line that has not said a good hello by then is closed
MAX_UNPROVEN = 64  # lines not yet past their hello at once; one more closes the oldest
MAX_HELLO = 1024
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")  # a hostname: nothing else reaches output


def short(name: str) -> str:
    return name.split(".", 1)[0]


class PeerWatch:
    """One runner's lines to the others: the hub holds one per other node, a spoke one to the hub.
    `on_lost(node, words)` is called once, from the watch's thread, for the first node lost.
    `nodes`: the job's node names (a hello naming another is refused); None: any hostname."""

    def __init__(self, here: str, timeout_s: float, on_lost, token: str | None = None, nodes=None):
        self.here, self.timeout_s, self.on_lost = here, float(timeout_s), on_lost
        self.token = token or secrets.token_hex(16)  # (the hub's, published; a spoke is given it)
        self.nodes = {short(n) for n in nodes} if nodes else None
        self.interval_s = max(0.5, min(5.0, self.timeout_s / 6))
        self.lines: dict[socket.socket, dict] = {}  # socket -> {"node", "seen", "bye", "hello", "since"}
        self.listener: socket.socket | None = None
        self.lost: tuple[str, str, float] | None = None  # (node, words, when)
        self.leaving = False
        self.refused = 0  # lines closed before or at their hello (someone else's, or too many)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # epoll where there is one: select() cannot watch a descriptor above FD_SETSIZE (1024),
        # which a job of a thousand nodes, or a thousand idle connections, would reach
        self._selector = selectors.DefaultSelector()

    # ---- the two ends ---------------------------------------------------------------------------

    def serve(self, address: str) -> int:
        """As the hub (rank 0's runner): listen on `address`; the port to publish."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((address, 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._start()
        return self.listener.getsockname()[1]

    def join(self, host: str, port: int, hub_node: str, connect_s: float = 30) -> None:
        """As a spoke: one line to the hub at host:port, introduced by this node's name."""
        sock = socket.create_connection((host, port), timeout=connect_s)
        sock.sendall(self.token.encode() + b" " + self.here.encode() + HELLO_END)
        sock.setblocking(False)
        self._add(sock, hub_node if self.valid_name(hub_node) else "rank 0's node")
        self._start()

    def valid_name(self, name: str) -> bool:
        """A node name that may reach why, the terminal and resources.exclude: a hostname of this job."""
        if not NODE_NAME.fullmatch(name):
            return False
        return self.nodes is None or short(name) in self.nodes

    # ---- the watch ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dlhpc-peers", daemon=True)
            self._thread.start()

    def _add(self, sock: socket.socket, node: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            self.lines[sock] = {"node": node, "seen": now, "bye": False, "hello": b"", "since": now}
            self._selector.register(sock, selectors.EVENT_READ)

    def _loop(self) -> None:
        next_beat = 0.0
        while not self.leaving:
            now = time.monotonic()
            if now >= next_beat:
                self._send_all(BEAT)
                next_beat = now + self.interval_s
            try:
                ready = self._selector.select(min(self.interval_s, 1.0))
            except (OSError, ValueError):  # (a line closed by stop() while we waited)
                continue
            for key, _events in ready:
                try:
                    self._accept() if key.fileobj is self.listener else self._read(key.fileobj)
                except Exception:  # noqa: BLE001 (the watch must outlive any one line)
                    if key.fileobj is not self.listener:
                        self._drop(key.fileobj)
            self._close_unproven()
            self._judge_silence()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        unproven = [(line["since"], s) for s, line in list(self.lines.items()) if line["node"] is None]
        if len(unproven) >= MAX_UNPROVEN:
            # the oldest goes, not the newcomer: a flood of silent lines cannot keep a real spoke
            # out (its hello comes with its connection and is read in the next round)
            self._drop(min(unproven, key=lambda pair: pair[0])[1])
        sock.setblocking(False)
        self._add(sock, None)

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
        if line["node"] is None:  # the spoke's hello: the job's token and its node's name, then beats
            line["hello"] += data
            if HELLO_END not in line["hello"]:
                if len(line["hello"]) > MAX_HELLO:
                    self._drop(sock)
                return
            hello, data = line["hello"].split(HELLO_END, 1)
            token, _, name = hello.partition(b" ")
            # bytes against bytes: any byte a stranger sends is compared, never decoded first
            if not hmac.compare_digest(token, self.token.encode()):
                self._drop(sock)  # (not one of this job's runners: it never counts)
                return
            name = name.decode("ascii", errors="replace")
            if not self.valid_name(name):
                self._drop(sock)  # (a name that is not one of the job's nodes never reaches any output)
                return
            line["node"] = name
        line["seen"] = time.monotonic()  # (only a line past its hello counts as heard from)
        if BYE in data:
            line["bye"] = True

    def _close_unproven(self) -> None:
        """Lines that have not said a good hello within HELLO_TIMEOUT_S are closed."""
        now = time.monotonic()
        for sock, line in list(self.lines.items()):
            if line["node"] is None and now - line["since"] > HELLO_TIMEOUT_S:
                self._drop(sock)

    def _drop(self, sock) -> None:
        with self._lock:
            line = self.lines.pop(sock, None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        if line is not None and line["node"] is None:
            self.refused += 1
        sock.close()

    def _closed(self, sock: socket.socket, line: dict) -> None:
        self._drop(sock)
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
            socks = [sock for sock, line in self.lines.items() if line["node"] is not None]
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
        self._selector.close()
