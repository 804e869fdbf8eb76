"""`dlhpc why`: the scheduler's state, exit code and reason, the trial's result.json and the end
of its job.err, turned into one cause and one fix per trial that did not simply succeed."""

import re
from pathlib import Path

import dlhpc.reasons as reasons
from dlhpc.errors import DlhpcError
from dlhpc.reasons import Reason
from dlhpc.results import rows as results
from dlhpc.results import status
from dlhpc.states import BAD, JobStatus, State

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
    trial: dict, sched: JobStatus | None, result: dict, err: str, spec: dict, used: dict | None = None, backend=None
) -> tuple[str, str]:
    """(cause, fix) for one trial; `sched` is what Backend.states() said of its job (None when it
    said nothing), `used` what accounting says it used.
    The first of RULES that recognises the trial answers."""
    _, cause, fix = diagnosis(trial, sched, result, err, spec, used, backend)
    return cause, fix


def diagnosis(trial, sched, result, err, spec, used=None, backend=None) -> tuple[str, str, str]:
    """(the rule that answered, cause, fix): the rule names the kind of fault for code that acts
    on it (submission/recovery.py), so no one matches the cause's words."""
    case = Case(trial, sched or JobStatus(State.UNKNOWN), result, err, spec, used or {}, backend or _NoBackend())
    for rule in RULES:
        answer = rule(case)
        if answer:
            return rule.__name__.lstrip("_"), *answer
    return "", f"{case.state.lower()}", ""


class Case:
    """What is known of one trial, as the rules read it."""

    def __init__(self, trial, sched, result, err, spec, used, backend):
        self.trial, self.sched, self.result, self.err = trial, sched, result, err
        self.used, self.backend = used, backend
        self.state, self.code = trial["state"], sched.reason_code
        self.train, self.res, self.data = spec.get("train", {}), spec.get("resources", {}), spec.get("data") or {}
        self.error = str(result.get("error") or "")
        self.text = err + "\n" + self.error + "\n" + str(result.get("traceback") or "")
        self.lost = result.get("lost_node")


def _pending(c: Case):
    if c.state not in ("PENDING", "REQUEUED"):  # (requeued: waiting to start again)
        return None
    if c.lost:  # requeued by the scheduler after the node failed (SLURM's NODE_FAIL)
        return _requeued_after_loss(c.trial, c.result)
    why = c.trial.get("why_pending") or "waiting in the queue"
    start = f"; expected to start {c.trial['est_start']}" if c.trial.get("est_start") else ""
    return f"pending: {why}{start}", reasons.fix(c.code, c.trial.get("job_id"), c.backend)


def _running(c: Case):
    if c.state != "RUNNING":
        return None
    if c.lost:
        return (
            f"{c.error}; its ranks were ended, and the scheduler ends the job once it sees the node down",
            f"nothing to do: {_resumes_from(c.trial)} when the scheduler requeues it; or dlhpc cancel EXP, then "
            "dlhpc resubmit EXP --failed",
        )
    return f"still running (epoch {c.trial.get('epoch') or 0}/{c.trial.get('epochs')})", "dlhpc logs EXP --follow"


def _stalled(c: Case):
    if c.state == "STALLED":
        return f"stalled: {c.trial.get('stalled')}", STALL_FIX
    return (c.error, STALL_ENDED_FIX) if c.result.get("stalled") else None


def _out_of_memory(c: Case):
    oom = re.search(r"exceeded memory limit \((\d+) > (\d+)\)", c.text)
    peak_mb, req_mb = c.used.get("mem_peak_mb"), c.used.get("mem_req_mb")
    # killed by SIGKILL with its peak at the request: the scheduler ended it for memory, silently
    killed_at_limit = c.sched.signal == 9 and peak_mb and req_mb and peak_mb >= 0.9 * req_mb
    if not (c.code == Reason.OUT_OF_MEMORY or oom or killed_at_limit or "oom-kill" in c.text.lower()):
        return None
    peak = f"; it used at least {_mib(int(oom.group(1)))}" if oom else ""
    peak = peak or (f"; its peak was {_mib(peak_mb * 2**20)}" if peak_mb else "")
    return f"out of memory: asked for resources.mem {c.res.get('mem')} per node{peak}", reasons.FIXES[
        Reason.OUT_OF_MEMORY
    ]


def _out_of_time(c: Case):
    if "timed-out too many times" not in c.text and c.state != "TIMEOUT":
        return None
    return (
        f"out of time: resources.time {c.res.get('time')} ran out with no requeues left "
        f"(timeout_requeues {c.res.get('timeout_requeues')})",
        reasons.FIXES[Reason.TIMEOUT],
    )


def _preempted(c: Case):
    if c.state == "PREEMPTED" or c.code == Reason.PREEMPTED:
        return "preempted: a job of higher priority took the nodes", reasons.FIXES[Reason.PREEMPTED]
    return None


def _lost_node(c: Case):
    if c.lost and c.state in ("FAILED", "UNKNOWN") or c.state == "FAILED" and c.code == Reason.NODE_FAIL:
        return _node_lost(c.trial, c.result, c.sched)
    return None


def _no_data(c: Case):
    if "MNIST not found" not in c.text:
        return None
    root = c.data.get("root") or "$DLHPC_DATA"
    return "the MNIST data is not where the job looked", f"dlhpc data fetch --root {root} (on the login node)"


def _diverged(c: Case):
    if "FloatingPointError" not in c.text and not re.search(r"loss became (nan|inf)", c.text):
        return None
    lr = c.train.get("lr")
    return (
        f"training diverged: the loss became NaN or infinite (train.lr {lr})",
        f"lower train.lr (e.g. --set train.lr={float(lr or 0.1) / 10:g}), or warm up (onecycle)",
    )


def _no_rendezvous(c: Case):
    if "did not publish" in c.text or "rendezvous" in c.text.lower() or "TCPStore" in c.text:
        return (
            "the ranks could not meet (rendezvous timed out)",
            "check that the nodes reach each other (dlhpc doctor --job), then submit again",
        )
    return None


def _cancelled(c: Case):
    if c.state == "CANCELLED" or c.code == Reason.CANCELLED:
        cause = "cancelled (dlhpc cancel, the scheduler's cancel command or an administrator)"
        return cause, reasons.FIXES[Reason.CANCELLED]
    return None


def _disk_full(c: Case):
    full = _no_space(c.text + "\n" + "\n".join(c.result.get("last_lines") or []))
    return (f"no space left on {full}", reasons.FIXES[Reason.NO_SPACE]) if full else None


def _failed_rank(c: Case):
    return _rank_failure(c.result) if c.result.get("failed_rank") is not None else None


def _python(c: Case):
    python = _python_error(c.text)
    if not python:
        return None
    frame, message = python
    return f"a Python error: {message} ({frame})", "fix the cause above; the whole traceback is in job.err"


def _search_said(c: Case):
    """What a search's agent recorded (search/agent.py): the program logged no value of the metric,
    or the trial's agent was lost twice."""
    fix = c.result.get("search_fix")
    return (c.error, fix) if c.state == "FAILED" and fix else None


def _ended_badly(c: Case):
    if c.state not in ("FAILED", "UNKNOWN"):
        return None
    exit_code = c.sched.exit_code or c.result.get("exit_code")
    killed = f" (killed by signal {c.sched.signal})" if c.sched.signal else ""
    exited = f" (exit code {exit_code})" if exit_code else killed
    last = next((line for line in reversed(c.err.splitlines()) if line.strip()), "no output in job.err")
    cause = f"the job ended with state {c.state}{exited}: {last[:200]}"
    return cause, "read the whole output: dlhpc logs EXP --trial ID"


# In order: the scheduler's own states first, then what the trial's files say, most specific first.
RULES = (
    _pending,
    _running,
    _stalled,
    _out_of_memory,
    _out_of_time,
    _preempted,
    _lost_node,
    _no_data,
    _diverged,
    _search_said,
    _no_rendezvous,
    _cancelled,
    _disk_full,
    _failed_rank,
    _python,
    _ended_badly,
)


def _resumes_from(trial: dict) -> str:
    epoch = trial.get("epoch") or 0
    return f"it resumes from epoch {epoch + 1} (its checkpoint)" if epoch else "it starts again from epoch 1"


def _node_lost(trial: dict, result: dict, sched: JobStatus) -> tuple[str, str]:
    """A node failed under the trial: named by the surviving runner (result.json's lost_node, with
    how it was seen) or by the scheduler (NODE_FAIL, its node list)."""
    node = result.get("lost_node")
    if node:
        words = str(result.get("error") or f"node {node} was lost")
    else:
        nodes = sched.nodes or "one of its nodes"
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


PRUNED_FIX = (
    "nothing to do: the search stopped it to spend its time on better trials; "
    "dlhpc submit --best-of EXP trains the best one again, e.g. longer"
)


def _pruned(result: dict, record: dict) -> dict:
    from dlhpc.search.results import describe_pruned

    metric = ((record.get("spec") or {}).get("search") or {}).get("metric", "the metric")
    return {"cause": describe_pruned(result.get("pruned") or {}, metric)}


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
        if trial["state"] == "PRUNED":  # not a fault: named, it says where and against what
            if trial_id:
                out.append({"trial": trial["trial"], "state": "PRUNED", **_pruned(result, record), "fix": PRUNED_FIX})
            continue
        if trial["state"] == "COMPLETED" and not warning:
            if trial_id:
                out.append({"trial": trial["trial"], "state": "COMPLETED", "cause": "it completed", "fix": ""})
            continue
        rule, cause, fix = (
            ("gpu_warning", warning, "")
            if trial["state"] == "COMPLETED"
            else diagnosis(
                trial,
                (info or {}).get(trial.get("job_id")),
                result,
                _tail(tdir / "job.err"),
                spec,
                used.get(trial.get("job_id")),
                sched,
            )
        )
        story = _retries_story(record, trial["trial"]) if trial["state"] in BAD else ""
        out.append(
            {
                "trial": trial["trial"],
                "job_id": trial.get("job_id"),
                "state": trial["state"],
                "cause": cause + story,
                "fix": fix,
                "rule": rule,
            }
        )
    return out


def _retries_story(record: dict, trial_id: str) -> str:
    """'; retried automatically 2 time(s) (...); not retried again: ...' (submission/recovery.py)."""
    tried = [r for r in record.get("retries") or [] if r.get("trial") == trial_id and r.get("automatic")]
    refused = (record.get("not_retried") or {}).get(trial_id)
    story = ""
    if tried:
        story += f"; retried automatically {len(tried)} time(s) (" + "; ".join(r["why"] for r in tried) + ")"
    if refused and (tried or "automatic is off" not in refused):
        story += f"; not retried{' again' if tried else ''}: {refused}"
    return story


def _trial_spec(tdir: Path) -> dict | None:
    from dlhpc.errors import UserError
    from dlhpc.fsutil import read_trial_spec

    try:
        return read_trial_spec(tdir / "spec.yaml")
    except (OSError, UserError):
        return None
