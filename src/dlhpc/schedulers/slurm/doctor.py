"""`dlhpc doctor` on a SLURM login node: commands, accounting, partitions, GPUs, and a tiny job
that reports the nodes' software."""

from dlhpc.errors import CommandError
from dlhpc.schedulers.base import Check, commands_missing
from dlhpc.schedulers.slurm.limits import max_array_size, partitions, wanted_partitions
from dlhpc.shell import run_command


def doctor_checks(spec) -> list[Check]:
    missing = commands_missing(("sbatch", "squeue", "sacct", "scancel", "scontrol"))
    checks = [
        Check(
            "SLURM commands",
            not missing,
            "all present" if not missing else f"missing: {', '.join(missing)}",
            "run on the cluster's login node, or load the slurm module",
        )
    ]
    if missing:
        return checks
    checks.append(_accounting_check())
    size = max_array_size()
    checks.append(
        Check("MaxArraySize", size is not None, str(size) if size else "unknown", "scontrol show config must answer")
    )
    try:
        parts = partitions()
    except CommandError as exc:
        checks.append(Check("partitions", False, str(exc).splitlines()[0], "scontrol show partition must answer"))
        return checks
    res = spec.data["resources"]
    for name in wanted_partitions(res, parts):
        checks += _partition_checks(name, parts, res)
    return checks


def _accounting_check() -> Check:
    try:
        run_command(["sacct", "-n", "-X", "-S", "now-1minutes"], timeout=20)
        return Check("accounting (sacct)", True, "sacct answers")
    except CommandError as exc:
        fix = "ask the admins to enable slurmdbd; dlhpc status falls back to squeue meanwhile"
        return Check("accounting (sacct)", False, str(exc).splitlines()[0], fix)


def _partition_checks(name: str, parts: dict, res: dict) -> list[Check]:
    """The partition exists and is UP, and has the GPUs a trial asks for."""
    if name not in parts:
        return [
            Check(
                f"partition {name}",
                False,
                "does not exist",
                f"set resources.partition to one of: {', '.join(sorted(parts))}",
            )
        ]
    checks = [
        Check(
            f"partition {name}",
            parts[name]["state"] == "UP",
            f"state {parts[name]['state']}, max time {parts[name]['max_time']}",
            "pick a partition that is UP",
        )
    ]
    if res["gpus_per_node"]:
        gpus = partition_gpus(name)
        checks.append(
            Check(
                f"GPUs in {name}",
                gpus >= res["gpus_per_node"],
                f"{gpus} per node available, {res['gpus_per_node']} asked",
                "ask for fewer GPUs, or pick a GPU partition (`sinfo -o '%P %G'`)",
            )
        )
    return checks


def partition_gpus(partition: str) -> int:
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


NODE_SOFTWARE = (
    "import torch,platform;print('python',platform.python_version(),'torch',torch.__version__,"
    "'cuda',torch.version.cuda,'gpus',torch.cuda.device_count(),'nccl',"
    "'.'.join(map(str,torch.cuda.nccl.version())) if torch.cuda.is_available() else None)"
)


def job_check(spec) -> list[Check]:
    """Run a tiny job to see Python/torch/CUDA/NCCL as the compute node sees them."""
    import sys

    res = spec.data["resources"]
    argv = ["srun", "-N1", "-n1", "--time=00:05:00"]
    if res["partition"]:
        argv.append(f"--partition={res['partition']}")
    if res["gpus_per_node"]:
        argv.append(f"--gpus-per-node={res['gpus_per_node']}")
    try:
        out = run_command(argv + [sys.executable, "-c", NODE_SOFTWARE], timeout=300).stdout.strip()
        return [Check("compute node software", True, out)]
    except CommandError as exc:
        return [Check("compute node software", False, str(exc).splitlines()[0], "see the srun error above")]
