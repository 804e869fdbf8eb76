"""`dlhpc why`: the scheduler's state, exit code and reason, the trial's result.json and the end
of its job.err, turned into one cause and one fix per trial that did not simply succeed."""

import re
from pathlib import Path

import dlhpc.reasons as reasons
from dlhpc.errors import DlhpcError
from dlhpc.reasons import Reason
from dlhpc.results import rows as results
from dlhpc.results import status

ERR_TAIL_LINES = 60


def _tail(path: Path, lines: int = ERR_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _python_error(text: str) -> tuple[str, str] | None:
    """(last frame, exception line) of the last traceback in text."""
    if "Traceback (most recent call last)" not in text:
        return None
    block = text[text.rindex("Traceback (most recent call last)") :].splitlines()
    frames = [line.strip() for line in block if line.strip().startswith("File ")]
    last = next((line.strip() for line in reversed(block) if line.strip() and not line.startswith(" ")), "")
    return (frames[-1] if frames else "", last)


def classify(
    trial: dict, sched: dict, result: dict, err: str, spec: dict, used: dict | None = None, backend=None
) -> tuple[str, str]:
    """(cause, fix) for one trial; `sched` is its job's row from Backend.states() (reason_code,
    exit_code, signal: the same keys from every backend), `used` what accounting says it used."""
    used = used or {}
    state, code = trial["state"], reasons.parse(sched.get("reason_code"))
    train, res = spec.get("train", {}), spec.get("resources", {})
    error = str(result.get("error") or "")
    text = err + "\n" + error + "\n" + str(result.get("traceback") or "")
    lost = result.get("lost_node")
    if state == "PENDING" and lost:  # requeued by the scheduler after the node failed (SLURM's NODE_FAIL)
        return _requeued_after_loss(trial, result)
    if state == "PENDING":
        why = trial.get("why_pending") or "waiting in the queue"
        start = f"; expected to start {trial['est_start']}" if trial.get("est_start") else ""
        return f"pending: {why}{start}", reasons.fix(code, trial.get("job_id"), backend or _NoBackend())
    if state == "RUNNING" and lost:
        return (
            f"{error}; its ranks were ended, and the scheduler ends the job once it sees the node down",
            f"nothing to do: {_resumes_from(trial)} when the scheduler requeues it; or dlhpc cancel EXP, then "
            "dlhpc resubmit EXP --failed",
        )
    if state == "RUNNING":
        return f"still running (epoch {trial.get('epoch') or 0}/{trial.get('epochs')})", "dlhpc logs EXP --follow"
    if state == "STALLED" or result.get("stalled"):
        if state == "STALLED":
            return f"stalled: {trial.get('stalled')}", STALL_FIX
        return error, STALL_ENDED_FIX
    oom = re.search(r"exceeded memory limit \((\d+) > (\d+)\)", text)
    peak_mb, req_mb = used.get("mem_peak_mb"), used.get("mem_req_mb")
    # killed by SIGKILL with its peak at the request: the scheduler ended it for memory, silently
    killed_at_limit = sched.get("signal") == 9 and peak_mb and req_mb and peak_mb >= 0.9 * req_mb
    if code == Reason.OUT_OF_MEMORY or oom or killed_at_limit or "oom-kill" in text.lower():
        peak = f"; it used at least {_mib(int(oom.group(1)))}" if oom else ""
        peak = peak or (f"; its peak was {_mib(peak_mb * 2**20)}" if peak_mb else "")
        return (
            f"out of memory: asked for resources.mem {res.get('mem')} per node{peak}",
            reasons.FIXES[Reason.OUT_OF_MEMORY],
        )
    if "timed-out too many times" in text or state == "TIMEOUT":
        return (
            f"out of time: resources.time {res.get('time')} ran out with no requeues left "
            f"(timeout_requeues {res.get('timeout_requeues')})",
            reasons.FIXES[Reason.TIMEOUT],
        )
    if state == "PREEMPTED" or code == Reason.PREEMPTED:
        return "preempted: a job of higher priority took the nodes", reasons.FIXES[Reason.PREEMPTED]
    if lost and state in ("FAILED", "UNKNOWN") or state == "FAILED" and code == Reason.NODE_FAIL:
        return _node_lost(trial, result, sched)
    if "MNIST not found" in text:
        root = (spec.get("data") or {}).get("root") or "$DLHPC_DATA"
        return "the MNIST data is not where the job looked", f"dlhpc data fetch --root {root} (on the login node)"
    if "FloatingPointError" in text or re.search(r"loss became (nan|inf)", text):
        return (
            f"training diverged: the loss became NaN or infinite (train.lr {train.get('lr')})",
            f"lower train.lr (e.g. --set train.lr={float(train.get('lr') or 0.1) / 10:g}), or warm up (onecycle)",
        )
    if "did not publish" in text or "rendezvous" in text.lower() or "TCPStore" in text:
        return (
            "the ranks could not meet (rendezvous timed out)",
            "check that the nodes reach each other (dlhpc doctor --job), then submit again",
        )
    if state == "CANCELLED" or code == Reason.CANCELLED:
        return "cancelled (dlhpc cancel, the scheduler's cancel command or an administrator)", reasons.FIXES[
            Reason.CANCELLED
        ]
    full = _no_space(text + "\n" + "\n".join(result.get("last_lines") or []))
    if full:
        return f"no space left on {full}", reasons.FIXES[Reason.NO_SPACE]
    if result.get("failed_rank") is not None:
        return _rank_failure(result)
    python = _python_error(text)
    if python:
        frame, message = python
        return f"a Python error: {message} ({frame})", "fix the cause above; the whole traceback is in job.err"
    if state in ("FAILED", "UNKNOWN"):
        exit_code = sched.get("exit_code") or result.get("exit_code")
        killed = f" (killed by signal {sched['signal']})" if sched.get("signal") else ""
        exited = f" (exit code {exit_code})" if exit_code else killed
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "no output in job.err")
        return (
            f"the job ended with state {state}{exited}: {last[:200]}",
            "read the whole output: dlhpc logs EXP --trial ID",
        )
    return f"{state.lower()}", ""


def _resumes_from(trial: dict) -> str:
    epoch = trial.get("epoch") or 0
    return f"it resumes from epoch {epoch + 1} (its checkpoint)" if epoch else "it starts again from epoch 1"


def _node_lost(trial: dict, result: dict, sched: dict) -> tuple[str, str]:
    """A node failed under the trial: named by the surviving runner (result.json's lost_node, with
    how it was seen) or by the scheduler (NODE_FAIL, its node list)."""
    node = result.get("lost_node")
    if node:
        words = str(result.get("error") or f"node {node} was lost")
    else:
        nodes = str(sched.get("nodes") or "") or "one of its nodes"
        node, words = nodes, f"the scheduler ended the job: a node failed under it ({nodes})"
    return (
        f"{words}; {_resumes_from(trial)}",
        f"dlhpc resubmit EXP --failed: it resumes from its checkpoint and keeps off {node} "
        "(while the cluster has nodes enough without it)",
    )


def _requeued_after_loss(trial: dict, result: dict) -> tuple[str, str]:
    node = result["lost_node"]
    waits = trial.get("why_pending") or "waiting in the queue"
    return (
        f"pending again: node {node} was lost under its last run, and the scheduler requeued the job; "
        f"{_resumes_from(trial)} once it starts ({waits})",
        f"nothing to do: it goes on by itself; to keep off {node} instead: dlhpc cancel EXP, then "
        "dlhpc resubmit EXP --failed",
    )


STALL_FIX = (
    "see where the named rank is (py-spy dump --pid PID on its node; the pids are in the trial's "
    "stall-NODE.json), then dlhpc cancel EXP and dlhpc resubmit EXP --failed: it resumes from its "
    "checkpoint; resources.stall.action: fail ends such a trial by itself"
)
STALL_ENDED_FIX = (
    "dlhpc resubmit EXP --failed: it resumes from its checkpoint; if it stalls again at the same "
    "epoch, the named rank's code (or its node) is the cause"
)


def _no_space(text: str) -> str | None:
    """The folder (or file) that was full: from the trainer's line, or from an OSError of a
    user's program (ENOSPC 28, EDQUOT 122); None when the text shows neither."""
    ours = re.findall(r"no space left on (\S+) \(", text)
    if ours:
        return ours[-1]
    theirs = re.findall(r"\[Errno (?:28|122)\] [^:\n]+(?:: '([^'\n]+)')?", text)
    if theirs:
        return theirs[-1] or "the disk the program wrote to (its error names no file)"
    return None


def _rank_failure(result: dict) -> tuple[str, str]:
    """A rank whose program exited non-zero (the runner recorded which, where, and its last lines)."""
    lines = [line for line in result.get("last_lines") or [] if line.strip()]
    python = _python_error("\n".join(lines))
    said = f"{python[1]} ({python[0]})" if python else (lines[-1][:200] if lines else "no output on stderr")
    shown = "".join(f"\n    | {line[:200]}" for line in lines[-10:])
    cause = (
        f"rank {result['failed_rank']} on {result.get('failed_node') or 'its node'} "
        f"{_exit_words(result.get('exit_code'))}: {said}; its last lines:{shown}"
    )
    return cause, "fix the cause above; the whole output is in job.err (dlhpc logs EXP --trial ID)"


def _exit_words(code) -> str:
    from dlhpc.node.ranks import describe_exit

    return describe_exit(int(code)) if isinstance(code, int) else "failed"


class _NoBackend:
    """Where the experiment's scheduler is not known: fixes without its commands."""

    def release_command(self, job_id: str) -> str:
        return f"release job {job_id}"


def gpu_warning(spec: dict, result: dict) -> str | None:
    wanted = (spec.get("resources") or {}).get("gpus_per_node") or 0
    if wanted and str(result.get("device", "")).startswith("cpu:"):
        return (
            f"asked for {wanted} GPU(s) per node, but training saw no CUDA device and ran on the CPU: check "
            "the partition and the CUDA module (dlhpc doctor --job)"
        )
    return None


def diagnose(exp_dir: Path, trial_id: str | None = None) -> list[dict]:
    from dlhpc.schedulers import backend

    record = results.read_record(exp_dir)
    sched = backend(record["scheduler"]) if record.get("scheduler") else _NoBackend()
    info, warnings = status.scheduler_info(exp_dir)
    report = status.collect(exp_dir, info, warnings)
    try:
        used = status.efficiency_info(exp_dir)
    except DlhpcError:
        used = {}
    out = []
    for trial in report["trials"]:
        if trial_id and trial["trial"] != trial_id:
            continue
        tdir = exp_dir / trial["trial"]
        result = results.read_result(tdir) or {}
        spec = _trial_spec(tdir) or record.get("spec", {})
        warning = gpu_warning(spec, result)
        if trial["state"] == "COMPLETED" and not warning:
            if trial_id:
                out.append({"trial": trial["trial"], "state": "COMPLETED", "cause": "it completed", "fix": ""})
            continue
        cause, fix = (
            (warning, "")
            if trial["state"] == "COMPLETED"
            else classify(
                trial,
                (info or {}).get(trial.get("job_id")) or {},
                result,
                _tail(tdir / "job.err"),
                spec,
                used.get(trial.get("job_id")),
                sched,
            )
        )
        out.append(
            {
                "trial": trial["trial"],
                "job_id": trial.get("job_id"),
                "state": trial["state"],
                "cause": cause,
                "fix": fix,
            }
        )
    return out


def _trial_spec(tdir: Path) -> dict | None:
    import yaml

    try:
        return yaml.safe_load((tdir / "spec.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
