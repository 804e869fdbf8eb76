"""The rendezvous store's keeper: a small program, run by the same interpreter (and in the same
image) as the trial's program, that hosts the TCPStore every rank joins (MASTER_ADDR/MASTER_PORT,
TORCHELASTIC_USE_AGENT_STORE, as under torchrun's agent). The store and the ranks must share a
torch: a client of one release may not speak to the store of another (torch 1.13 hangs on a 2.x
store), and a program may run in an image or a virtualenv of its own. It runs as `python -c`, so
it needs nothing of dlhpc where it runs; it prints its port, and serves until its standard input
closes (the runner ends, or closes it)."""

import subprocess

KEEPER = """
import datetime, socket, sys
import torch.distributed as dist
address, timeout = sys.argv[1], datetime.timedelta(seconds=int(sys.argv[2]))
sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
sock.bind((address, 0))
sock.listen(1024)
try:  # listen on `address` alone: TCPStore itself listens on every interface whatever host it is given
    store = dist.TCPStore(address, sock.getsockname()[1], None, True, timeout, wait_for_workers=False,
                          master_listen_fd=sock.fileno())
except TypeError:  # a torch without master_listen_fd (before 2.0): it listens on every interface
    sock.close()
    store = dist.TCPStore(address, 0, None, True, timeout, wait_for_workers=False)
print(store.port, flush=True)
sys.stdin.read()
"""


class KeeperFailed(RuntimeError):
    pass


def start(command: list[str], address: str, env: dict, timeout_s: int = 300) -> tuple[subprocess.Popen, int]:
    """Start the keeper (`command` is the interpreter, with the container's command before it
    where there is one) listening on `address`; (its process, the store's port)."""
    proc = subprocess.Popen(
        [*command, "-c", KEEPER, address, str(timeout_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    line = proc.stdout.readline().decode().strip()
    if not line.isdigit():
        proc.kill()
        proc.wait()
        raise KeeperFailed(
            f"the rendezvous store did not start ({' '.join(command)} -c ...: exit {proc.returncode}); "
            "its error is in job.err. The program's interpreter must import torch"
        )
    return proc, int(line)


def stop(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
