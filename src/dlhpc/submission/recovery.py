"""resources.retry.automatic: a failed trial comes back without anyone typing `resubmit`.

No daemon on the login node. With every submission (and every retry) dlhpc queues one small
recovery job (one core, 15 minutes at most) that the scheduler starts once the experiment's jobs
have ended (afterany). It applies the rules `dlhpc resubmit --failed` applies, to the trials that
failed in a way a retry can mend (the first that fits):

    a node lost under it     off that node (resources.exclude), while enough usable nodes are left
    out of memory            resources.mem × retry.factor, up to retry.max_mem and the site's max_mem
    out of time              resources.time × retry.factor, up to retry.max_time and the site's max_time
    preempted                unchanged
    an exit code in retry.exit_codes (a program's own "run me again")   unchanged

each at most retry.max_retries times per trial, every cap and the site policy checked as at any
submission (preflight). Out of memory (or time) a second time with nothing left to raise ends it.
Anything else — a Python error, a missing file or module, a bad spec, a cancel, a stall — is never
retried: it ends FAILED with why's cause, and why says it was not retried and why not.

Each retry queues the next recovery job after its own jobs, so the chain ends by itself when
nothing is left to retry. A recovery job that starts while a job it follows is still in flight (a
requeue the dependency did not wait for) queues itself again after it and does nothing else.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from dlhpc.fsutil import read_json

SCRIPT = "recover.sh"
NODE, MEMORY, TIME, PREEMPTED = "a node was lost", "out of memory", "out of time", "preempted"
RULE_KINDS = {"lost_node": NODE, "out_of_memory": MEMORY, "out_of_time": TIME, "preempted": PREEMPTED}
RAISED = (MEMORY, TIME)  # the kinds a retry gives more of


@dataclass
class Decision:
    """What the recovery does with one failed trial."""

    trial: str
    why: str | None  # the kind of failure it is retried for; None: not retried
    cause: str  # why's cause
    attempt: int  # the retry this is, 1-based (not retried: the retries it had)
    of: int  # resources.retry.max_retries
    refused: str = ""  # why it is not retried


def automatic(data: dict) -> bool:
    return bool(((data.get("resources") or {}).get("retry") or {}).get("automatic"))


def attempts(record: dict, trial_id: str) -> list[dict]:
    """The automatic retries a trial had, oldest first (experiment.json's retries)."""
    return [r for r in record.get("retries") or [] if r.get("trial") == trial_id and r.get("automatic")]


def kind_of(diagnosed: dict, result: dict, exit_codes: list) -> str | None:
    """The kind of failure, from the rule of `why` that named it (results/why.py), or the exit
    code the program chose; None for every failure a retry cannot mend."""
    kind = RULE_KINDS.get(diagnosed.get("rule", ""))
    if kind:
        return kind
    code = result.get("exit_code")
    if diagnosed.get("rule") in ("failed_rank", "python", "ended_badly") and code in (exit_codes or []):
        return f"exit code {code}"
    return None


def decide(exp_dir: Path, record: dict, diagnosed: list, raised: dict, trial_specs: dict) -> list[Decision]:
    """One Decision per trial that ended badly. `raised` is retry.raises' plan for them,
    `trial_specs` each trial's spec data."""
    from dlhpc.states import BAD

    out = []
    for d in diagnosed:
        if d["state"] not in BAD:
            continue
        tid, data = d["trial"], trial_specs[d["trial"]]
        asked = (data.get("resources") or {}).get("retry") or {}
        before, of = attempts(record, tid), int(asked.get("max_retries", 3))
        result = read_json(Path(exp_dir) / tid / "result.json", {}) or {}
        kind = kind_of(d, result, asked.get("exit_codes") or [])
        decision = Decision(tid, None, d["cause"], len(before), of)
        if not automatic(data):
            decision.refused = "resources.retry.automatic is off"
        elif d["state"] == "CANCELLED" or kind is None:
            decision.refused = "a retry cannot mend it (only a lost node, memory, time, a preemption or an exit code "
            "listed in resources.retry.exit_codes are retried)"
        elif len(before) >= of:
            decision.refused = f"it was retried {len(before)} time(s) already (resources.retry.max_retries {of})"
        elif kind in RAISED and tid not in raised and before and before[-1].get("why") == kind:
            decision.refused = f"{kind} again, and nothing is left to raise (resources.retry.max_mem, max_time)"
        else:
            decision.why, decision.attempt = kind, len(before) + 1
        out.append(decision)
    return out


def entries(decisions: list, raised: dict) -> dict:
    """{trial id: its retries entry}, for the retried decisions (retry.record writes them)."""
    return {
        d.trial: {
            "why": d.why,
            "resources": (raised.get(d.trial) or {}).get("resources") or {},
            "automatic": True,
            "attempt": d.attempt,
            "of": d.of,
        }
        for d in decisions
        if d.why
    }


def chain(p, sched, jobs: list, say=print) -> None:
    """Queue the recovery job after these jobs, when the trials ask for automatic retries."""
    if sched.runs_here or not any(automatic(t.data) for t in p.trials):
        return
    after = sorted({j["job_id"] for j in jobs})
    job = queue(p.exp_dir, sched, after, p.trials[0].data["resources"], p.spec.data["name"])
    say(f"recovery: job {job} retries the trials that fail in a way a retry can mend (resources.retry.automatic)")


def queue(exp_dir: Path, sched, after: list, resources: dict, name: str) -> str:
    """Queue the recovery job after these job ids; experiment.json's `recovery` names it."""
    from dlhpc.plan import experiment
    from dlhpc.submission.followup import write_script

    purpose = "the scheduler runs it once the jobs it follows have ended; it retries what a retry can mend"
    script = write_script(
        exp_dir, SCRIPT, purpose, ["-m", "dlhpc.submission.recover_job", exp_dir], sched.submit_command
    )
    job = sched.submit_followup(script, after, f"{name}-recover", resources, exp_dir)
    experiment.update_record(
        exp_dir, recovery={"job": job, "after": after, "queued": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    )
    return job
