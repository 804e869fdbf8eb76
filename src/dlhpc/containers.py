"""The command that runs a rank's program in the spec's container image (env.container), one
class per runtime, as each runtime's documentation gives it (docs/containers.md names the pages).

Only the program runs in the image: the batch script, the rank launch, the rendezvous store,
signals and requeue stay on the host, so they keep working whatever the image holds. The command
is rendered into the job script (DLHPC_CONTAINER, a JSON list) with three placeholders the node's
runner fills per rank: {trial_dir} (the working directory), {name} (a container name, unique per
rank and run) and {env} (the flags that pass the rank's variables in, for runtimes that do not
pass the environment themselves).

Paths keep their host names inside the container (the experiment, the data, the user's binds), so
every path the contract hands the program means the same inside; dlhpc's own code is bound
read-only at /opt/dlhpc/lib/dlhpc and put on PYTHONPATH, so the image needs only a Python with
torch.
"""

import json
import os
from pathlib import Path

DLHPC_LIB = "/opt/dlhpc/lib"  # inside the image: dlhpc's package, bound read-only
ENV_PLACEHOLDER = "{env}"


def dlhpc_package_dir() -> str:
    return str(Path(__file__).resolve().parent)


def guess_runtime(image: str) -> str:
    """The runtime an image's form suggests, where the spec does not say."""
    if image.endswith((".sif", ".simg")):
        return "apptainer"
    if image.endswith((".sqsh", ".squashfs")):
        return "enroot"
    if image.startswith("/") or image.startswith("."):
        return "charliecloud"  # a folder: an unpacked image
    return "podman"  # a reference: docker://..., localhost/name:tag, nvcr.io/...


def is_reference(image: str) -> bool:
    """An image named in a registry or a runtime's store, not a path on the filesystem."""
    return not (image.startswith("/") or image.startswith("."))


class Runtime:
    name = ""
    executable = ""  # the command on PATH (dlhpc doctor looks for it)
    passes_environment = True  # the runtime hands its own environment to the program

    def command(self, image: str, binds: list[tuple[str, str, bool]], gpus: bool, options: list) -> list[str]:
        raise NotImplementedError

    def env_flags(self, names: list[str]) -> list[str]:
        return []

    def cleanup(self, name: str) -> list[str] | None:
        """A command that removes a rank's container if killing the runtime's process leaves it."""
        return None

    def exists(self, name: str) -> list[str] | None:
        """A command that exits 0 while a container of that name is still there (None: no such thing)."""
        return None

    def prepare(self, command: list[str]) -> None:
        """Anything the image needs before a rank starts in it (on the node, per run)."""

    def adjust_environment(self, command: list[str], env: dict) -> None:
        """What the runtime's own process needs in its environment to start this command."""


class Apptainer(Runtime):
    """apptainer exec (Apptainer user guide: "exec", "Bind Paths and Mounts", "GPU Support"):
    the host environment passes in by default; --nv binds the NVIDIA driver and devices."""

    name = "apptainer"
    executable = "apptainer"

    def command(self, image, binds, gpus, options):
        argv = [self.executable, "exec", "--pwd", "{trial_dir}"]
        for src, dst, ro in binds:
            argv += ["--bind", f"{src}:{dst}" + (":ro" if ro else "")]
        return argv + (["--nv"] if gpus else []) + list(options) + [image]


class Singularity(Apptainer):
    name = executable = "singularity"


class Podman(Runtime):
    """podman run (podman-run(1)): the host's network and IPC (the ranks meet on the host's
    addresses; NCCL uses shared memory), standard input kept open (-i: the store's keeper serves
    until it closes), the rank's variables passed one by one (--env NAME takes the value from
    podman's own environment), GPUs through CDI."""

    name = "podman"
    executable = "podman"
    passes_environment = False

    def command(self, image, binds, gpus, options):
        argv = ["podman", "run", "--rm", "-i", "--name", "{name}", "--network=host", "--ipc=host", "-w", "{trial_dir}"]
        for src, dst, ro in binds:
            argv += ["-v", f"{src}:{dst}" + (":ro" if ro else "")]
        argv += [ENV_PLACEHOLDER]
        return argv + (["--device", "nvidia.com/gpu=all"] if gpus else []) + list(options) + [image]

    def env_flags(self, names):
        return [flag for name in names for flag in ("--env", name)]

    def cleanup(self, name):
        return ["podman", "rm", "--force", "--ignore", name]

    def exists(self, name):
        return ["podman", "container", "exists", name]


class Charliecloud(Runtime):
    """ch-run (ch-run(1)): the image is a folder; the environment passes in; a bind's target is
    made in the image folder if missing. GPUs need the image prepared with `ch-fromhost --nvidia`."""

    name = "charliecloud"
    executable = "ch-run"

    def command(self, image, binds, gpus, options):
        argv = ["ch-run", "--cd", "{trial_dir}"]
        for src, dst, _ro in binds:
            argv += ["-b", f"{src}:{dst}"]
        return argv + list(options) + [image, "--"]

    def prepare(self, command):
        """ch-run binds only onto folders that exist in the image (Charliecloud 0.31): make the
        missing mount points in the image folder, which its owner can write."""
        image = Path(command[command.index("--") - 1])
        for target in self._targets(command):
            if target == "/tmp" or target.startswith("/tmp/"):
                continue  # the guest's /tmp is the host's (adjust_environment)
            point = image / target.lstrip("/")
            if not point.is_dir():
                try:
                    point.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise RuntimeError(
                        f"Charliecloud binds only onto folders that exist in the image: {point} is missing and "
                        f"cannot be made ({exc.strerror}); create {target} in the image"
                    ) from None

    def adjust_environment(self, command, env):
        """ch-run binds the host's $TMPDIR at the guest's /tmp (a job's private folder under PBS,
        say): a bind under /tmp needs the host's /tmp there, where the path exists."""
        if any(t == "/tmp" or t.startswith("/tmp/") for t in self._targets(command)):
            env["TMPDIR"] = "/tmp"

    @staticmethod
    def _targets(command) -> list[str]:
        return [command[i + 1].split(":", 1)[1] for i, token in enumerate(command) if token == "-b"]


class Enroot(Runtime):
    """enroot start (enroot's usage.md): --mount SRC:DST, --env NAME; the NVIDIA hooks give the
    GPUs when NVIDIA_VISIBLE_DEVICES is passed. enroot has no working-directory flag: a shell
    changes to it before the program starts."""

    name = "enroot"
    executable = "enroot"
    passes_environment = False

    def command(self, image, binds, gpus, options):
        argv = ["enroot", "start"]
        for src, dst, ro in binds:
            argv += ["--mount", f"{src}:{dst}" + (":ro" if ro else "")]
        argv += [ENV_PLACEHOLDER] + (["--env", "NVIDIA_VISIBLE_DEVICES"] if gpus else []) + list(options)
        return argv + [image, "sh", "-c", 'cd "$0" && exec "$@"', "{trial_dir}"]

    def env_flags(self, names):
        return [flag for name in names for flag in ("--env", name)]


class Pyxis(Runtime):
    """SLURM's Pyxis plugin (its README: srun --container-image, --container-mounts,
    --container-workdir). dlhpc does not put its launcher in the image (the job's whole srun
    would then run there, and scontrol requeue is not inside): each rank's runner starts its
    program as one more step on its own node, --overlap with the job's step, in the image."""

    name = "pyxis"
    executable = "srun"

    def command(self, image, binds, gpus, options):
        mounts = ",".join(f"{src}:{dst}" + (":ro" if ro else "") for src, dst, ro in binds)
        return [
            "srun",
            "--overlap",
            "--nodes=1",
            "--ntasks=1",
            "--nodelist={node}",
            "--export=ALL",
            f"--container-image={image}",
            f"--container-mounts={mounts}",
            "--container-workdir={trial_dir}",
            *options,
        ]


RUNTIMES = {cls.name: cls for cls in (Apptainer, Singularity, Podman, Charliecloud, Enroot, Pyxis)}


def runtime_of(container: dict) -> Runtime:
    return RUNTIMES[container.get("runtime") or guess_runtime(container["image"])]()


def parse_bind(text: str) -> tuple[str, str, bool]:
    parts = text.split(":")
    ro = parts[-1] == "ro" and len(parts) > 1
    parts = parts[:-1] if ro else parts
    return parts[0], parts[1] if len(parts) > 1 else parts[0], ro


def prefix(data: dict, exp_dir: Path) -> list[str] | None:
    """The container command for a trial's spec (None: no container); the program's argv follows."""
    container = (data.get("env") or {}).get("container") or {}
    if not container.get("image"):
        return None
    binds = [(str(exp_dir), str(exp_dir), False)]
    from dlhpc.spec.program import is_builtin

    if is_builtin(data):  # the built-in trainer reads MNIST
        from dlhpc.train.data import resolve_root

        root = str(resolve_root((data.get("data") or {}).get("root")).absolute())
        binds.append((root, root, True))
    binds.append((dlhpc_package_dir(), f"{DLHPC_LIB}/dlhpc", True))
    binds += [parse_bind(b) for b in container.get("binds") or []]
    image = container["image"]
    if not is_reference(image):
        image = os.path.abspath(os.path.expanduser(image))
    return runtime_of(container).command(image, binds, wants_gpus(data), container.get("options") or [])


def wants_gpus(data: dict) -> bool:
    """env.container.gpus, where `auto` means: when the trial asks for GPUs."""
    gpus = ((data.get("env") or {}).get("container") or {}).get("gpus")
    return bool((data.get("resources") or {}).get("gpus_per_node")) if gpus == "auto" else bool(gpus)


def expand(command: list[str], runtime: Runtime, trial_dir: str, name: str, env_names: list[str]) -> list[str]:
    """The rendered command for one rank: placeholders filled."""
    node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    out = []
    for token in command:
        if token == ENV_PLACEHOLDER:
            out += runtime.env_flags(env_names)
        else:
            out.append(token.replace("{trial_dir}", trial_dir).replace("{name}", name).replace("{node}", node))
    return out


def to_json(command: list[str] | None) -> str:
    return json.dumps(command) if command else ""
