"""What the recovery job runs (resources.retry.automatic; the rules are submission/recovery.py):
`python -m dlhpc.submission.recover_job EXP`, once the jobs it follows have ended. It decides,
records, and resubmits the trials to retry, under the experiment's lock, as `dlhpc resubmit`
would; a chained recovery job follows those."""

import time
from pathlib import Path

from dlhpc.errors import DlhpcError
from dlhpc.submission.recovery import Decision, decide, entries, queue


def recover(exp_dir: Path, say=print) -> list[Decision]:
    """What the recovery job runs: decide, record, and resubmit the trials to retry."""
    from dlhpc.fsutil import no_write_for_others
    from dlhpc.ownership import require_own
    from dlhpc.submission.journal import locked

    exp_dir = Path(exp_dir).absolute()
    require_own(exp_dir, "retry its trials: their env.setup and program would run as you")
    with no_write_for_others(), locked(exp_dir):
        return _recover_locked(exp_dir, say)


def _recover_locked(exp_dir: Path, say) -> list[Decision]:
    from dlhpc.fsutil import read_trial_spec
    from dlhpc.plan import experiment
    from dlhpc.results.rows import read_record
    from dlhpc.results.why import diagnose
    from dlhpc.schedulers import backend
    from dlhpc.states import IN_FLIGHT
    from dlhpc.submission import pipeline, retry

    record = read_record(exp_dir)
    sched = backend(record["scheduler"])
    after = (record.get("recovery") or {}).get("after") or []
    info, _ = sched.states(after, exp_dir, False) if after else ({}, [])
    still = sorted(j for j in after if (info or {}).get(j) and info[j].state in IN_FLIGHT)
    if still:  # (a requeue the dependency let through): after them, once more
        job = queue(exp_dir, sched, still, record["spec"]["resources"], record.get("name") or exp_dir.name)
        say(f"recovery: jobs {', '.join(still)} are still in flight; job {job} looks again once they end")
        return []
    diagnosed = diagnose(exp_dir)
    specs = {d["trial"]: read_trial_spec(exp_dir / d["trial"] / "spec.yaml") for d in diagnosed}
    spec = pipeline.spec_of_today(record)
    raised = retry.raises(exp_dir, list(specs), spec, diagnosed)
    decisions = decide(exp_dir, record, diagnosed, raised, specs)
    retried = [d for d in decisions if d.why]
    refused = {d.trial: d.refused for d in decisions if not d.why}
    for d in decisions:
        say(f"{d.trial}: {f'retry {d.attempt}/{d.of}: {d.why}' if d.why else f'not retried: {d.refused}'}")
    # (this job stays the recovery job of record until the retries' own is queued: status must
    # never see the failed trials with no recovery on its way)
    experiment.update_record(exp_dir, not_retried={**(record.get("not_retried") or {}), **refused})
    if retried:
        options = pipeline.ResubmitOptions(trials=",".join(d.trial for d in retried))
        try:
            pipeline.resubmit_locked(exp_dir, options, say, automatic=entries(retried, raised))
            return decisions
        except DlhpcError as exc:  # (preflight or the policy refused the retry: said, and it ends)
            first = " ".join(str(exc).split())[:400]
            say(f"recovery: the retry was refused: {first}")
            refused.update({d.trial: f"the retry was refused: {first}" for d in retried})
            experiment.update_record(exp_dir, not_retried={**(record.get("not_retried") or {}), **refused})
    ended = {**(record.get("recovery") or {}), "job": None, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    experiment.update_record(exp_dir, recovery=ended)
    return decisions


if __name__ == "__main__":
    import sys

    try:
        recover(Path(sys.argv[1]))
    except DlhpcError as exc:  # said in the recovery job's log; the trials keep the state they had
        print(f"dlhpc recovery: {exc}", file=sys.stderr)
        sys.exit(2)
