"""A search's agent: what each array task of a search runs (docs/search.md).

It loops: take a trial from the study (under the claims lock) → run it through the same runner
as every trial (multi-node, containers, requeue, the stall watch and tracking all apply) → tell
the study how it ended, until the study has its `trials`. While a trial runs, a thread follows
its metrics.jsonl, reports each value of the searched metric to the study and writes the
pruner's verdict for the program (search/verdict.py), and keeps the trial's claim alive.

Taking a trial, in this order:
1. this agent's own trial from before it was requeued: it resumes from its checkpoint;
2. a trial whose agent gave no sign of life for `lost_after_s` (killed, its node lost): taken
   over once, resumed from its checkpoint; lost a second time it is told FAILED, never silently
   dropped;
3. a new trial asked of the study, while it has fewer than `trials`.
Trial numbers are the slots' indices: asks happen under the lock, so Optuna numbers them 0..N-1.

On a multi-node trial (or several ranks per node) only rank 0 works the study; the others follow
its choice through `current.json` in the agent's folder.
"""

import os
import socket
import threading
import time
from pathlib import Path

from dlhpc.fsutil import atomic_write_json, read_json, read_trial_spec
from dlhpc.node.job import (
    _out_of_time,
    _output_to,
    _quiet_sigcont,
    _record_error,
    _replay_held_signals,
    _RunsATrial,
)
from dlhpc.search import asha, verdict
from dlhpc.search.results import final_value, metric_steps

CLAIM = "claim.json"  # in a trial's folder: which agent has it, its attempt; its mtime is the heartbeat
CURRENT = "current.json"  # in an agent's folder: the trial rank 0 runs now, for the other ranks
CLAIMS_LOCK = "claims"  # study/claims.lock: held while a trial is taken or told
HEARTBEAT_S = 5.0
MAX_ATTEMPTS = 2  # a trial is run by a second agent once if its first was lost
# what a run leaves in a trial's folder: a slot asked afresh starts without them
LEFTOVERS = ("result.json", "metrics.jsonl", "checkpoint.pt", verdict.VERDICT, verdict.STOPPED, "requeues.json")


class SearchAgent(_RunsATrial):
    def __init__(self, exp_dir, agent_id: str):
        self.exp_dir, self.agent_id = str(Path(exp_dir).absolute()), agent_id

    def __call__(self):
        from dlhpc.node.identity import detect

        _quiet_sigcont()
        _replay_held_signals()
        return self.work(detect())

    def work(self, denv) -> int:
        """Run trials until the study has enough; the number this agent finished."""
        if denv.rank != 0:
            return self._follow(denv)
        return Work(Path(self.exp_dir), self.agent_id, denv, self).loop()

    def _follow(self, denv) -> int:
        """A rank other than 0: run each trial rank 0 announces in this run of the job."""
        folder, seen, done = Path(self.exp_dir) / self.agent_id, None, 0
        record = read_json(Path(self.exp_dir) / "experiment.json", {}) or {}
        metric, slots = record["spec"]["search"]["metric"], {t["id"] for t in record["trials"]}
        while True:
            current = read_json(folder / CURRENT, None)
            mine = isinstance(current, dict) and current.get("run") == _run_id(denv)
            if mine and current.get("done"):
                return done
            if mine and current.get("seq") != seen and str(current.get("trial")) in slots:
                seen = current["seq"]
                trial_dir = Path(self.exp_dir) / current["trial"]
                with _output_to(trial_dir), searching(metric):  # (every rank asks the verdict together)
                    try:
                        self._start(trial_dir)
                    except Exception:
                        pass  # (rank 0 records and tells the end of the trial)
                self._wait_for_requeue()
                done += 1
            time.sleep(0.5)

    def checkpoint(self, *args, **kwargs):
        import submitit

        self._stop_for_requeue()
        return submitit.helpers.DelayedSubmission(SearchAgent(self.exp_dir, self.agent_id))

    def __getstate__(self):
        return {"exp_dir": self.exp_dir, "agent_id": self.agent_id}

    def __setstate__(self, state):
        self.exp_dir, self.agent_id, self._run = state["exp_dir"], state["agent_id"], None

    def __repr__(self):
        return f"SearchAgent({self.agent_id} of {Path(self.exp_dir).name})"


class searching:
    """The trial's ranks learn which metric their search follows ($DLHPC_SEARCH_METRIC), for as
    long as it runs: the trainer and dlhpc.trial ask for verdicts only then."""

    def __init__(self, metric: str):
        self.metric, self.before = metric, None

    def __enter__(self):
        self.before = os.environ.get(verdict.METRIC_VAR)
        os.environ[verdict.METRIC_VAR] = self.metric
        return self

    def __exit__(self, *exc):
        if self.before is None:
            os.environ.pop(verdict.METRIC_VAR, None)
        else:
            os.environ[verdict.METRIC_VAR] = self.before
        return False


def _run_id(denv) -> str:
    return f"{denv.job_id}:{denv.restart}"


class Work:
    """Rank 0's loop over the study."""

    def __init__(self, exp_dir: Path, agent_id: str, denv, agent: SearchAgent):
        from dlhpc.search import study

        self.exp_dir, self.agent_id, self.denv, self.agent = exp_dir, agent_id, denv, agent
        record = read_json(exp_dir / "experiment.json", {}) or {}
        self.name, self.search = record["name"], record["spec"]["search"]
        self.slots = [t["id"] for t in record["trials"]]
        self.study_mod = study
        self.seq = 0
        pruner = self.search["pruner"]
        self.pausing = pruner["kind"] == "asha" and bool(pruner.get("resume"))  # search/asha.py

    def loop(self) -> int:
        done = 0
        try:
            while True:
                task = self._take()
                if task is None:
                    return done
                if not self._run(*task):
                    return done  # the job is ending: its trial waits for the requeue, or another agent
                done += 1
        finally:
            self._announce(done=True)

    # ---- taking a trial ----
    def _lock(self):
        from optuna.storages.journal import JournalFileOpenLock

        return _Held(JournalFileOpenLock(str(self.exp_dir / "study" / CLAIMS_LOCK)))

    def _take(self):
        """(number, slot id, attempt) of the trial to run next, or None when the study is done."""
        from optuna.trial import TrialState

        with self._lock():
            study = self.study_mod.load(self.exp_dir, self.name)
            trials = study.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            for t in running:  # 1. this agent's own, from before a requeue
                claim = self._claim(t.number)
                if claim.get("agent") == self.agent_id and not claim.get("paused"):
                    return self._claimed(t.number, claim.get("attempt", 1))
            for t in running:  # 2. one whose agent was lost (a paused trial has no agent: it waits)
                claim, age = self._claim(t.number), self._claim_age(t.number)
                if claim.get("paused") or age is None or age < self.search["lost_after_s"]:
                    continue
                attempt = claim.get("attempt", 1) + 1
                if attempt > MAX_ATTEMPTS:
                    self._give_up(study, t.number, claim)
                    continue
                print(
                    f"dlhpc: trial {self.slots[t.number]}: its agent {claim.get('agent')} gave no sign of life for "
                    f"{age:.0f} s; {self.agent_id} takes it over (attempt {attempt})",
                    flush=True,
                )
                return self._claimed(t.number, attempt)
            paused = self._paused(running) if self.pausing else []
            promoted = self._promote(trials, paused)  # 3. a paused trial now in the top 1/reduction of its rung
            if promoted is not None:
                return promoted
            if len(trials) >= len(self.slots):
                if paused and len(paused) == len(running):  # the end: nothing runs, no trial is to come
                    return self._promote(trials, paused, ending=True) or self._settle_paused(study, paused)
                return None  # (a trial still runs and may push a paused one into the top: its agent goes on)
            return self._ask(len(trials))

    def _paused(self, running) -> list:
        """(step, trial, claim) of each paused trial, the highest rung first."""
        paused = [(c["step"], t, c) for t in running if (c := self._claim(t.number)).get("paused")]
        return sorted(paused, key=lambda entry: -entry[0])

    def _promote(self, trials, paused, ending: bool = False):
        """ASHA's promotion: the first paused trial (highest rung first) that is now in the top
        1/reduction of the trials at its rung, resumed from its checkpoint; None if none is. At the
        study's end the best at a rung goes on even where fewer than `reduction` reached it, so
        that the best configuration is trained to its end."""
        maximize, eta = self.search["direction"] == "maximize", self.search["pruner"]["reduction"]
        for step, t, claim in paused:
            values = asha.values_at(trials, step)
            if not asha.in_top(t.intermediate_values[step], values, eta, maximize, at_least=int(ending)):
                continue
            tdir = self.exp_dir / self.slots[t.number]
            for stale in (verdict.VERDICT, verdict.STOPPED):  # the verdict that paused it would stop it again
                _remove(tdir / stale)
            print(
                f"dlhpc: trial {self.slots[t.number]} is now in the top 1/{eta} at step {step}; "
                f"{self.agent_id} resumes it from its checkpoint",
                flush=True,
            )
            return self._claimed(t.number, claim.get("attempt", 1))
        return None

    def _settle_paused(self, study, paused) -> None:
        """Every trial asked, none running, none to promote: the paused ones are PRUNED for good."""
        for _, t, _claim in paused:
            tdir = self.exp_dir / self.slots[t.number]
            result = read_json(tdir / "result.json", {}) or {}
            self._mark(tdir, result, state="PRUNED", pruned={**(result.get("pruned") or {}), "settled": True})
            study.tell(t.number, state=_state("PRUNED"))
            if not self.search["pruner"]["keep_checkpoints"]:
                _remove(tdir / "checkpoint.pt")

    def _ask(self, number: int):
        from dlhpc.spec.sweep import with_values

        study = self.study_mod.load(self.exp_dir, self.name, self.search, for_number=number)
        trial = study.ask()
        if trial.number != number:  # someone asked outside the lock (Optuna's own tools on the file)
            study.tell(trial.number, state=_state("FAIL"))
            raise RuntimeError(f"the study has trial {trial.number} where {number} was expected; was it changed?")
        values = self.study_mod.suggest(trial, self.search)
        slot = self.slots[number]
        trial.set_user_attr("dlhpc_trial", slot)
        tdir = self.exp_dir / slot
        for leftover in LEFTOVERS:  # an earlier ask of this number whose write the file system lost
            _remove(tdir / leftover)
        base = read_trial_spec(tdir / "spec.yaml")
        data, params = with_values(base, values)
        from dlhpc.fsutil import atomic_write_text, private_mode
        from dlhpc.spec.load import dump_trial_spec

        atomic_write_text(tdir / "spec.yaml", dump_trial_spec(data), mode=private_mode())
        info = read_json(tdir / "trial.json", {}) or {}
        atomic_write_json(tdir / "trial.json", {**info, "params": params, "number": number}, mode=private_mode())
        return self._claimed(number, 1)

    def _claimed(self, number: int, attempt: int):
        slot = self.slots[number]
        claim = {
            "agent": self.agent_id,
            "number": number,
            "attempt": attempt,
            "job_id": self.denv.job_id or None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.time(),
        }
        from dlhpc.fsutil import private_mode

        atomic_write_json(self.exp_dir / slot / CLAIM, claim, mode=private_mode())
        return number, slot, attempt

    def _claim(self, number: int) -> dict:
        return read_json(self.exp_dir / self.slots[number] / CLAIM, {}) or {}

    def _claim_age(self, number: int) -> float | None:
        try:
            return time.time() - (self.exp_dir / self.slots[number] / CLAIM).stat().st_mtime
        except OSError:
            return None

    def _give_up(self, study, number: int, claim: dict) -> None:
        """Lost twice: FAILED, with the words, in the study and the trial's result."""
        tdir = self.exp_dir / self.slots[number]
        words = f"its agent was lost {MAX_ATTEMPTS} times (last {claim.get('agent')} on {claim.get('host')})"
        fix = "look at the agents' job.out (dlhpc logs EXP --trial agent-N) and the nodes; its values are in trial.json"
        result = read_json(tdir / "result.json", {}) or {}
        atomic_write_json(tdir / "result.json", {**result, "state": "FAILED", "error": words, "search_fix": fix})
        study.tell(number, state=_state("FAIL"))

    # ---- running it ----
    def _announce(self, trial: str | None = None, done: bool = False) -> None:
        if self.denv.world_size <= 1:
            return
        self.seq += 0 if done else 1
        entry = {"run": _run_id(self.denv), "seq": self.seq, **({"done": True} if done else {"trial": trial})}
        atomic_write_json(self.exp_dir / self.agent_id / CURRENT, entry)

    def _run(self, number: int, slot: str, attempt: int) -> bool:
        """Run the trial and tell the study how it ended; False when the job is ending under it."""
        from dlhpc.node.runner import TrialFailed

        tdir = self.exp_dir / slot
        watch = Watch(self, number, tdir)
        self._announce(slot)
        with _output_to(tdir), searching(self.search["metric"]):
            print(f"dlhpc: trial {slot} (search trial {number}, attempt {attempt}) by {self.agent_id}", flush=True)
            watch.start()
            try:
                self.agent._start(tdir)
            except TrialFailed:
                pass  # recorded in its result.json; told below
            except Exception as exc:
                if _out_of_time(exc):
                    raise  # the agent's time is up: its requeue resumes this trial
                _record_error(tdir, exc)
            finally:
                watch.stop()
        if watch.taken_over:
            print(f"dlhpc: trial {slot} was taken over by another agent; not telling it", flush=True)
            return True
        run = self.agent._run
        if run is not None and run.interrupted_by_job:  # its exit is not its end: not told
            print(f"dlhpc: trial {slot} stopped as the job ends; it resumes from its checkpoint", flush=True)
            self.agent._wait_for_requeue()
            return False
        self._tell(number, tdir, watch)
        return True

    def _tell(self, number: int, tdir: Path, watch: "Watch") -> None:
        result = read_json(tdir / "result.json", {}) or {}
        # pruned only where the program stopped on the verdict: the trainer says PRUNED, a program
        # of one's own leaves pruned.json (dlhpc.trial.should_prune); one that never asks ran on
        stopped = result.get("state") == "PRUNED" or (tdir / verdict.STOPPED).exists()
        pruned = (watch.pruned or verdict.read(tdir) or {"prune": True}) if stopped else None
        with self._lock():
            study = self.study_mod.load(self.exp_dir, self.name)
            claim = self._claim(number)
            if claim.get("agent") != self.agent_id:
                return  # taken over while this one ran on: the other agent tells it
            if pruned and pruned.get("paused") and result.get("state") == "PRUNED":
                # ASHA's pause: not told; it waits at its rung with its checkpoint (search/asha.py)
                self._mark(tdir, result, state="PRUNED", pruned=_pruned_facts(pruned))
                atomic_write_json(tdir / CLAIM, {**claim, "paused": True, "step": int(pruned["step"])})
                return
            if pruned and result.get("state") in ("COMPLETED", "PRUNED"):
                self._mark(tdir, result, state="PRUNED", pruned=_pruned_facts(pruned))
                study.tell(number, state=_state("PRUNED"))
                if not self.search["pruner"]["keep_checkpoints"]:
                    _remove(tdir / "checkpoint.pt")
                return
            if result.get("state") == "COMPLETED":
                value = final_value(tdir, self.search["metric"])
                if value is not None:
                    study.tell(number, value)
                    return
                metric = self.search["metric"]
                self._mark(
                    tdir,
                    result,
                    state="FAILED",
                    error=f"the program logged no {metric}, the metric the search optimizes (search.metric)",
                    search_fix=f"log it each epoch with dlhpc.trial.log(epoch=..., {metric}=...), or set "
                    "search.metric to a key the program logs",
                )
            study.tell(number, state=_state("FAIL"))

    def _mark(self, tdir: Path, result: dict, **fields) -> None:
        atomic_write_json(tdir / "result.json", {**result, **fields})


class Watch:
    """While a trial runs: its heartbeat, and the pruner's verdict on each step of the metric."""

    def __init__(self, work: Work, number: int, tdir: Path):
        self.work, self.number, self.tdir = work, number, tdir
        self.reported: set = set()
        self.pruned: dict | None = None
        self.taken_over = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dlhpc-search-watch", daemon=True)
        self._study = None
        self._rungs = None  # (pausing ASHA) the steps at which this trial may wait

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self):
        last_beat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                self._beat()
            try:
                self._follow_metrics()
            except Exception as exc:  # the study could not be read this time: try again next round
                print(f"dlhpc: search: {type(exc).__name__}: {exc}", flush=True)
            self._stop.wait(0.25)
        self._follow_metrics()

    def _beat(self):
        claim = self.work._claim(self.number)
        if claim.get("agent") != self.work.agent_id:
            self.taken_over = True
            run = self.work.agent._run
            if run is not None and run.ranks is not None:
                run.stop()  # another agent has it now: this one gives it up
            return
        try:
            os.utime(self.tdir / CLAIM)
        except OSError:
            pass

    def _follow_metrics(self):
        if self.pruned is not None:
            return
        metric = self.work.search["metric"]
        steps = metric_steps(self.tdir / "metrics.jsonl", metric)
        new = [(s, v) for s, v in steps if s not in self.reported]
        if not new:
            return
        if self._study is None:
            w = self.work
            self._study = w.study_mod.load(w.exp_dir, w.name, w.search, for_number=self.number)
        trial = self.work.study_mod.trial_of(self._study, self.number)
        if self.work.pausing and not self.reported:  # a paused trial resumed: its earlier steps are told
            done = self._study._storage.get_trial(trial._trial_id).intermediate_values
            new = [(s, v) for s, v in new if int(s) not in done]
            self.reported.update(s for s, _ in steps if int(s) in done)
        for step, value in new:
            self.reported.add(step)
            trial.report(value, int(step))
            prune = self._pause(int(step), value) if self.work.pausing else trial.should_prune()
            facts = _compare(self._study, self.number, int(step), value, self.work.search) if prune else {}
            if prune and self.work.pausing:
                facts["paused"] = True
            verdict.write(self.tdir, step, prune, value=value, **facts)
            if prune:
                self.pruned = {"step": step, "value": value, **facts}
                return

    def _pause(self, step: int, value: float) -> bool:
        """ASHA's rule at a rung: go on only while in the top 1/reduction of the trials there."""
        if self._rungs is None:
            epochs = read_trial_spec(self.tdir / "spec.yaml")["train"]["epochs"]
            pruner = self.work.search["pruner"]
            self._rungs = asha.rung_steps(pruner["min_epochs"], pruner["reduction"], epochs)
        if step not in self._rungs:
            return False
        search = self.work.search
        values = asha.values_at(self._study.get_trials(deepcopy=False), step)
        return not asha.in_top(value, values, search["pruner"]["reduction"], search["direction"] == "maximize")


def _compare(study, number: int, step: int, value: float, search: dict) -> dict:
    """What a pruned value was judged against: the other trials' values at that step, the best of
    them, and the value it needed (ASHA and Hyperband: the top 1/reduction; median: the median)."""
    import statistics

    others = [
        t.intermediate_values[step]
        for t in study.get_trials(deepcopy=False)
        if t.number != number and step in t.intermediate_values
    ]
    facts = {"kind": search["pruner"]["kind"], "compared_with": len(others)}
    if not others:
        return facts
    maximize = search["direction"] == "maximize"
    ranked = sorted(others + [value], reverse=maximize)
    facts["best"] = ranked[0]
    if search["pruner"]["kind"] == "median":
        facts["needed"] = statistics.median(others)
    else:
        keep = max(1, len(ranked) // search["pruner"]["reduction"])
        facts["needed"] = ranked[keep - 1]
        # its rung: how many rungs lie before this step
        facts["rung"] = len(asha.rung_steps(search["pruner"]["min_epochs"], search["pruner"]["reduction"], step))
    return facts


def _pruned_facts(pruned: dict) -> dict:
    keys = ("step", "value", "kind", "rung", "best", "needed", "compared_with", "paused")
    return {k: pruned[k] for k in keys if k in pruned}


def _state(name: str):
    from optuna.trial import TrialState

    return getattr(TrialState, name)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class _Held:
    """Optuna's lock file (an exclusive create, safe on NFS) as a context manager."""

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()
        return False
