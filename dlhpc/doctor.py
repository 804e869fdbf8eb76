"""`dlhpc doctor`: a checklist for a login node, each failure with its fix; exit 1 if any fails."""

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlhpc.errors import CommandError, UserError
from dlhpc.shell import run_command


@dataclass
class Check:
    name: str
    ok: bool | None  # None = a warning
    detail: str
    fix: str = ""


def _slurm_checks(spec) -> list[Check]:
    from dlhpc.schedulers import slurm

    checks = []
    missing = [c for c in ("sbatch", "squeue", "sacct", "scancel", "scontrol") if shutil.which(c) is None]
    checks.append(Check("SLURM commands", not missing, "all present" if not missing else f"missing: {', '.join(missing)}",
                        "run on the cluster's login node, or load the slurm module"))
    if missing:
        return checks
    try:
        run_command(["sacct", "-n", "-X", "-S", "now-1minutes"], timeout=20)
        checks.append(Check("accounting (sacct)", True, "sacct answers"))
    except CommandError as exc:
        checks.append(Check("accounting (sacct)", False, str(exc).splitlines()[0],
                            "ask the admins to enable slurmdbd; dlhpc status falls back to squeue meanwhile"))
    size = slurm.max_array_size()
    checks.append(Check("MaxArraySize", size is not None, str(size) if size else "unknown",
                        "scontrol show config must answer"))
    try:
        parts = slurm.partitions()
    except CommandError as exc:
        checks.append(Check("partitions", False, str(exc).splitlines()[0], "scontrol show partition must answer"))
        return checks
    res = spec.data["resources"]
    wanted = res["partition"].split(",") if res["partition"] else [n for n, p in parts.items() if p["default"]]
    for name in wanted:
        if name not in parts:
            checks.append(Check(f"partition {name}", False, "does not exist",
                                f"set resources.partition to one of: {', '.join(sorted(parts))}"))
            continue
        checks.append(Check(f"partition {name}", parts[name]["state"] == "UP",
                            f"state {parts[name]['state']}, max time {parts[name]['max_time']}", "pick a partition that is UP"))
        if res["gpus_per_node"]:
            gpus = _partition_gpus(name)
            checks.append(Check(f"GPUs in {name}", gpus >= res["gpus_per_node"],
                                f"{gpus} per node available, {res['gpus_per_node']} asked",
                                "ask for fewer GPUs, or pick a GPU partition (`sinfo -o '%P %G'`)"))
    return checks


def _partition_gpus(partition: str) -> int:
    try:
        out = run_command(["sinfo", "-h", "-p", partition, "-o", "%G"], timeout=20).stdout
    except CommandError:
        return 0
    best = 0
    for gres in out.split():
        for item in gres.split(","):
            fields = item.split(":")
            if fields[0] == "gpu" and fields[-1].split("(")[0].isdigit():
                best = max(best, int(fields[-1].split("(")[0]))
    return best


def _pbs_checks(spec) -> list[Check]:
    missing = [c for c in ("qsub", "qstat", "qdel") if shutil.which(c) is None]
    return [Check("PBS commands", not missing, "all present" if not missing else f"missing: {', '.join(missing)}",
                  "run on the cluster's login node, or load the PBS module")]


def _common_checks(spec) -> list[Check]:
    from dlhpc.train import data as mnist

    checks = []
    root = mnist.resolve_root(spec.data["data"]["root"])
    checks.append(Check("MNIST data", mnist.is_present(root), f"{mnist.raw_dir(root)}",
                        f"dlhpc data fetch --root {root}"))
    out = Path(os.path.expanduser(spec.data["output"])).absolute()
    local_like = any(str(out).startswith(p) for p in ("/tmp", "/var/tmp", "/dev/shm", "/scratch/local", "/local"))
    checks.append(Check("output folder", None if local_like else True, str(out),
                        "use a shared filesystem (home, project or scratch) that compute nodes also see"
                        if local_like else ""))
    checks.append(Check("Python", True, f"{platform.python_version()} ({os.sys.executable})"))
    try:
        from importlib import metadata

        checks.append(Check("torch", True, metadata.version("torch")))
    except Exception:
        checks.append(Check("torch", False, "not installed", "pip install torch torchvision"))
    return checks


def _job_check(spec) -> list[Check]:
    """Run a tiny job to see Python/torch/CUDA/NCCL as the compute node sees them."""
    res = spec.data["resources"]
    code = ("import torch,platform;print('python',platform.python_version(),'torch',torch.__version__,"
            "'cuda',torch.version.cuda,'gpus',torch.cuda.device_count(),'nccl',"
            "'.'.join(map(str,torch.cuda.nccl.version())) if torch.cuda.is_available() else None)")
    argv = ["srun", "-N1", "-n1", "--time=00:05:00"]
    if res["partition"]:
        argv.append(f"--partition={res['partition']}")
    if res["gpus_per_node"]:
        argv.append(f"--gpus-per-node={res['gpus_per_node']}")
    try:
        out = run_command(argv + [os.sys.executable, "-c", code], timeout=300).stdout.strip()
        return [Check("compute node software", True, out)]
    except CommandError as exc:
        return [Check("compute node software", False, str(exc).splitlines()[0], "see the srun error above")]


def run(spec_path, sets, job=False) -> int:
    from rich.console import Console

    from dlhpc.spec import load_spec

    try:
        spec = load_spec(spec_path, sets)
    except UserError:
        raise
    sched = spec.data["resources"]["scheduler"]
    checks = []
    if sched == "slurm":
        checks += _slurm_checks(spec)
    elif sched == "pbs":
        checks += _pbs_checks(spec)
    checks += _common_checks(spec)
    if job and sched == "slurm":
        checks += _job_check(spec)
    console = Console(highlight=False)
    console.print(f"[bold]dlhpc doctor[/] — scheduler {sched}, spec {spec_path or '(defaults)'}")
    for c in checks:
        mark = "[green]✓[/]" if c.ok else ("[yellow]![/]" if c.ok is None else "[red]✗[/]")
        console.print(f" {mark} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            console.print(f"     fix: {c.fix}")
    failed = [c for c in checks if c.ok is False]
    console.print(f"{len(failed)} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0
