"""A rank's program in the spec's container image (env.container): the runner's side of
dlhpc/containers.py, which rendered the runtime's command into the job script (DLHPC_CONTAINER)."""

import os
import re


class InContainer:
    """The rank's program in the spec's image (env.container, rendered into DLHPC_CONTAINER)."""

    # what a rank's program gets from the host besides the contract
    PASSED = ("PYTHONPATH", "PYTHONUNBUFFERED", "OMP_NUM_THREADS", "DLHPC_CPUS_PER_TASK", "GLOO_SOCKET_IFNAME",
              "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "TORCHELASTIC_USE_AGENT_STORE", "MASTER_ADDR",
              "MASTER_PORT", "TZ", "LANG")  # fmt: skip

    def __init__(self, command: list, runtime: str):
        from dlhpc.containers import RUNTIMES

        self.template, self.runtime, self.names = command, RUNTIMES[runtime](), []
        self.runtime.prepare(command)

    def command(self, argv: list, env: dict, denv) -> list:
        from dlhpc.containers import expand

        name = _container_name(env, denv)
        env.setdefault("USER", _user())  # ch-run refuses to start without it
        self.runtime.adjust_environment(self.template, env)
        passed = [k for k in env if k.startswith(("DLHPC_", "TORCHELASTIC_", "GROUP_", "ROLE_", "LOCAL_"))]
        passed += [k for k in ("RANK", "WORLD_SIZE", *self.PASSED, *_spec_vars()) if k in env]
        self.names.append(name)
        return expand(self.template, self.runtime, env["DLHPC_TRIAL_DIR"], name, sorted(set(passed))) + argv

    def clean_up(self, wait_s: float = 60) -> None:
        """Remove what killing a runtime's client may leave (podman's container), and wait until
        it is gone: a `podman run --rm` whose client was killed may still be removing it, and a
        removal asked meanwhile can fail; the job must not end with a container left behind."""
        import subprocess
        import time

        deadline = time.monotonic() + wait_s
        for name in self.names:
            argv, exists = self.runtime.cleanup(name), self.runtime.exists(name)
            while argv:
                subprocess.run(argv, capture_output=True, timeout=60)
                if not exists or subprocess.run(exists, capture_output=True, timeout=60).returncode != 0:
                    break
                if time.monotonic() > deadline:
                    print(f"dlhpc: container {name} is still there; remove it with: {' '.join(argv)}", flush=True)
                    break
                time.sleep(0.5)


def _container_name(env: dict, denv) -> str:
    """Unique to this rank of this run of the trial (podman refuses a name in use)."""
    raw = f"dlhpc-{denv.job_id or os.getpid()}-{env['DLHPC_TRIAL_ID']}-r{env['RANK']}-{denv.restart}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def _user() -> str:
    import getpass

    return getpass.getuser()


def _spec_vars() -> list:
    """env.vars of the spec: the job script exported them, and the program expects them."""
    return [k for k in os.environ.get("DLHPC_SPEC_VARS", "").split(",") if k]
