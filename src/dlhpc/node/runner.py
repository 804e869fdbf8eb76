"""Run one trial's program on this node's ranks: the built-in trainer (`python -m dlhpc.train`)
and the user's script, module or function alike, each rank a child process started with the
torchrun contract (contract.py) in the trial's folder.

Signals: the time-limit warning (SIGUSR2: SLURM's --signal, PBS's pbs_launch timer) and SIGTERM
reach this process; it passes them on to its ranks as the spec's program.stop_signal (TERM by
default, what torchrun forwards) and SIGTERM, and chains to the handler that was there before
(submitit's, which checkpoints and requeues on rank 0: job.py waits up to program.grace_s for the
ranks to save and exit first).
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

from dlhpc.fsutil import atomic_write_json, read_json
from dlhpc.node import contract, rendezvous, store
from dlhpc.node.identity import Identity, node_name
from dlhpc.node.incontainer import InContainer
from dlhpc.node.peers import PeerWatch
from dlhpc.node.ranks import Ranks, describe_exit
from dlhpc.node.stall import StallWatch
from dlhpc.node.stall import describe as describe_stall

CODE_DIR = "code"
TIMEOUTS = {"node": 60, "rendezvous": 300, "collective": 600}  # resources.timeouts' defaults (spec/schema.py)


class TrialFailed(RuntimeError):
    pass


def trial_data(trial_dir: Path) -> dict:
    from dlhpc.fsutil import read_trial_spec

    return read_trial_spec(Path(trial_dir) / "spec.yaml")


def program_argv(data: dict, trial_dir: Path, in_container: bool = False) -> tuple[list[str], dict]:
    """The command every rank runs, and the variables it adds (PYTHONPATH for the code copy; in a
    container, the image's interpreter and dlhpc's code bound into it)."""
    from dlhpc.containers import DLHPC_LIB
    from dlhpc.spec import program

    kind = program.kind(data)
    image_python = ((data.get("env") or {}).get("container") or {}).get("python") or "python3"
    if kind == program.BUILTIN:  # dlhpc's own program, through the same contract
        python, extra = (image_python, {"PYTHONPATH": DLHPC_LIB}) if in_container else (sys.executable, {})
        return [python, "-u", "-m", "dlhpc.train", str(trial_dir)], extra
    exp_dir = trial_dir.parent
    settings = data["program"]
    record = read_json(exp_dir / "code.json", {}) or {}
    code = exp_dir / CODE_DIR
    args = program.format_args(settings.get("args") or [], data.get("params") or {})
    if in_container:
        python = settings.get("python") or image_python
        path = os.pathsep.join((str(code), DLHPC_LIB))
    else:
        python = settings.get("python") or record.get("python") or sys.executable
        path = os.pathsep.join(p for p in (str(code), os.environ.get("PYTHONPATH", "")) if p)
    if kind == "script":
        return [python, "-u", str(code / record["script"]), *args], {"PYTHONPATH": path}
    if kind == "module":
        return [python, "-u", "-m", settings["module"], *args], {"PYTHONPATH": path}
    return [python, "-u", "-m", "dlhpc.node.entry", settings["entry"], *args], {"PYTHONPATH": path}


class TrialRun:
    """One run of a trial on this node (a requeue is a new run)."""

    def __init__(self, trial_dir, denv: Identity):
        self.trial_dir = Path(trial_dir).absolute()
        self.exp_dir = self.trial_dir.parent
        self.denv = denv
        self.data = trial_data(self.trial_dir)
        settings = self.data.get("program") or {}
        self.stop_signal = signal.Signals["SIG" + (settings.get("stop_signal") or "TERM")]
        self.grace_s = float(settings.get("grace_s") or 60)
        self.ranks: Ranks | None = None
        self.container = None
        self.meeting = None
        self.mirror = None  # the TensorBoard events of metrics.jsonl (rank 0, tracking.tensorboard)
        self.watch = None  # node/stall.py's, over this node's ranks
        self.stalled: dict | None = None  # its verdict, when it ended the trial (resources.stall.action fail)
        self.peers: PeerWatch | None = None  # node/peers.py's: whether the job's other nodes are still there
        self.timeouts = {**TIMEOUTS, **((self.data.get("resources") or {}).get("timeouts") or {})}
        self.started = time.time()
        self.terminated = False  # the job was ended (SIGTERM: cancel, requeue, preemption) while it ran

    @property
    def interrupted_by_job(self) -> bool:
        """Stopped from outside (the time-limit warning, or the job ended): the program's exit is
        not the trial's end; the requeue, or the resubmission, runs it on from its checkpoint."""
        return self.terminated or (self.ranks is not None and self.ranks.stop_requested is not None)

    @property
    def is_main(self) -> bool:
        return self.denv.rank == 0

    def start(self) -> None:
        if self.is_main:
            self._count_rerun()
        container = os.environ.get("DLHPC_CONTAINER")
        argv, extra = program_argv(self.data, self.trial_dir, in_container=bool(container))
        if container:
            self.container = InContainer(json.loads(container), os.environ.get("DLHPC_CONTAINER_RUNTIME", ""))
        envs = [{**env, **extra} for env in self._rank_environments(argv[0])]
        commands = [argv] * len(envs)
        if container:
            commands = [self.container.command(argv, env, self.denv) for env in envs]
        self.ranks = Ranks(commands, envs, self.trial_dir)
        self.ranks.start()
        if self.peers is not None and self.peers.lost is not None:  # (lost while the ranks started)
            self.ranks.signal_all(signal.SIGKILL)
        self._watch_for_stalls()
        if self.is_main and (self.data.get("tracking") or {}).get("tensorboard"):
            self.mirror = _start_event_mirror(self.trial_dir)

    def _watch_for_stalls(self) -> None:
        settings = (self.data.get("resources") or {}).get("stall") or {}
        on_stall = {"fail": self._end_stalled, "requeue": self._requeue_stalled}.get(settings.get("action"))
        ranks = [(self.rank_of(i), proc.pid) for i, proc in enumerate(self.ranks.procs)]
        self.watch = StallWatch(self.trial_dir, ranks, settings, on_stall).start()

    def _end_stalled(self, verdict: dict) -> None:
        """resources.stall.action fail: end the ranks now; wait() records why."""
        self.stalled = verdict
        self.ranks.signal_all(signal.SIGKILL)

    def _requeue_stalled(self, verdict: dict) -> None:
        """resources.stall.action requeue: rank 0's runner requeues the job through submitit's
        requeue (scontrol requeue, qrerun), up to stall.requeues times; the scheduler then ends
        every node's ranks, and the new run resumes from the checkpoint. Past the cap, or with no
        scheduler to requeue, the trial fails as with action fail."""
        if not self.is_main:
            return  # (rank 0's runner sees the same stall and requeues the whole job)
        cap = int(((self.data.get("resources") or {}).get("stall") or {}).get("requeues", 2))
        path = self.trial_dir / "stall-requeues.json"
        done = int((read_json(path, {}) or {}).get("count", 0))
        if not self.denv.launcher.startswith("submitit-") or done >= cap:
            self._end_stalled({**verdict, "requeued_before": done})
            return
        atomic_write_json(path, {"count": done + 1, "last": verdict})
        print(f"dlhpc: requeueing the stalled trial ({done + 1} of {cap})", file=sys.stderr, flush=True)
        try:
            import submitit

            submitit.JobEnvironment()._requeue(cap - done - 1)
        except Exception as exc:  # (no requeue after all: it fails, and says why)
            print(f"dlhpc: the requeue failed ({exc}); ending the trial", file=sys.stderr, flush=True)
            self._end_stalled(verdict)

    def _end_job_after_loss(self) -> None:
        """The job must not hold its nodes once a node is lost under it. Where its step waits on
        for the lost node's part (SLURM's srun, until the controller declares the node failed:
        SlurmdTimeout, or never when the node comes back first), rank 0's runner requeues the job
        itself, as the scheduler would after a node failure, up to resources.retry.max_retries
        times; past that it cancels the job, and the trial stays FAILED naming the node."""
        if not (self.is_main and self.denv.step_outlives_lost_node and self.denv.job_id):
            return
        cap = int(((self.data.get("resources") or {}).get("retry") or {}).get("max_retries", 3))
        path = self.trial_dir / "lost-requeues.json"
        done = int((read_json(path, {}) or {}).get("count", 0))
        try:
            if done < cap:
                atomic_write_json(path, {"count": done + 1})
                print(f"dlhpc: requeueing the job after the lost node ({done + 1} of {cap})", file=sys.stderr)
                import submitit

                submitit.JobEnvironment()._requeue(cap - done)
            else:
                from dlhpc.schedulers import backend

                print(f"dlhpc: ending the job: lost nodes requeued it {done} time(s) already", file=sys.stderr)
                backend(self.denv.launcher.removeprefix("submitit-")).cancel([self.denv.job_id], self.exp_dir)
        except Exception as exc:  # (said; the scheduler's own node-failure handling is left)
            print(f"dlhpc: could not end the job after the lost node: {exc}", file=sys.stderr, flush=True)

    def _record_stall(self) -> None:
        suspect = self.stalled.get("suspect") or {}
        result = self._current_result()
        result.update(
            state="FAILED",
            error=f"stalled: {describe_stall(self.stalled)}",
            stalled=self.stalled,
            failed_rank=suspect.get("rank"),
            failed_node=suspect.get("node") or self.stalled.get("node"),
        )
        atomic_write_json(self.trial_dir / "result.json", {**self._facts(), **result})

    def _host_store(self, python: str):
        """How rank 0 hosts the store: a keeper run by the program's own interpreter, in its image
        (node/store.py), so that the store and the ranks share one torch."""
        env = {**os.environ, "DLHPC_TRIAL_DIR": str(self.trial_dir), "DLHPC_TRIAL_ID": self.trial_dir.name}
        command = [python]
        if self.container is not None:  # (it names the keeper's container by RANK, and sets USER)
            env["RANK"] = "store"
            command = self.container.command(command, env, self.denv)
            del env["RANK"]
        return lambda address: store.start(command, address, env)

    def _rank_environments(self, python: str) -> list[dict]:
        """Meet the other nodes' runners (rank 0 hosts the store), then each local rank's contract."""
        master, interface, agent_store = None, None, True
        if self.denv.world_size == 1 and self.denv.launcher != "env":
            # one rank: it hosts its own store on the loopback (as `torchrun --standalone`), and
            # the job is spared a keeper (an interpreter with torch loaded)
            master, interface, agent_store = ("127.0.0.1", rendezvous.free_port("127.0.0.1")), "lo", False
        elif self.denv.launcher != "env":  # under torchrun, its agent hosts the store already
            self.meeting = self._meet(python)
            master = (self.meeting.host, self.meeting.port)
            interface = rendezvous.gloo_interface(self.denv, self.meeting.host)
        requeues = int((self.data.get("resources") or {}).get("timeout_requeues") or 0)
        local = range(self.denv.ranks_here) if self.denv.ranks_here > 1 else [self.denv.local_rank]
        params = self.data.get("params") or {}
        return [
            contract.rank_environment(
                self.denv,
                r,
                self.trial_dir,
                params,
                master,
                stop_signal=self.stop_signal.name[3:],
                max_restarts=requeues,
                gloo_interface=interface,
                agent_store=agent_store,
                collective_timeout_s=float(self.timeouts["collective"]),
            )
            for r in local
        ]

    def _meet(self, python: str) -> rendezvous.Meeting:
        """Meet the other nodes' runners; with more than one node, keep a line to them (rank 0's
        runner is the hub) to see one that is lost (node/peers.py)."""
        several = len(set(self.denv.hostnames or [])) > 1
        also = None
        if several:
            self.peers = PeerWatch(node_name(), float(self.timeouts["node"]), self._end_lost, nodes=self.denv.hostnames)
            if self.is_main:  # (the token goes into the trial's folder, which only the owner reads)
                also = {"peers": self.peers.serve(rendezvous.bind_address(self.denv)), "token": self.peers.token}
        timeout_s = float(self.timeouts["rendezvous"])
        meeting = rendezvous.meet(self.denv, self.trial_dir, self._host_store(python), timeout_s=timeout_s, also=also)
        published = meeting.published or {}
        if several and not self.is_main and published.get("peers"):
            self.peers.token = str(published.get("token") or "")
            self.peers.join(meeting.host, int(published["peers"]), str(published.get("node") or "rank 0's node"))
        return meeting

    def _end_lost(self, node: str, words: str) -> None:
        """A node of the job is lost (node/peers.py): end this node's ranks now (they would wait in
        a collective for the lost ones until resources.timeouts.collective, or the walltime);
        wait() records which node."""
        print(f"dlhpc: node {node} is lost: {words}; ending the ranks on {node_name()}", file=sys.stderr, flush=True)
        if self.ranks is not None:
            self.ranks.signal_all(signal.SIGKILL)

    def _count_rerun(self) -> None:
        """A start under the job id the trial last started under is a rerun: the scheduler
        requeued the job (its time limit, a preemption, a stall, a node lost, an admin). Counted
        here, as it starts, so the requeues status shows are the ones that happened (a last
        time-limit signal with no requeue left asks for none). After a lost node the count also
        notes which loss it follows, so status no longer shows that run's FAILED."""
        job_id = self.denv.job_id or None
        if job_id is None:
            return
        path = self.trial_dir / "requeues.json"
        counted = read_json(path, {}) or {}
        if counted.get("job_id") == job_id:
            counted["count"] = int(counted.get("count", 0)) + 1
            previous = read_json(self.trial_dir / "result.json", {}) or {}
            if previous.get("lost_node") and previous.get("job_id") == job_id:
                counted["after_loss_at"] = previous.get("lost_at")
        counted["job_id"] = job_id
        atomic_write_json(path, counted)

    def _record_lost(self, lost: tuple) -> None:
        """The trial FAILED because a node was lost under it: said by the runner that saw it
        (the lost node's own cannot), with the node's name, whatever its ranks wrote before."""
        node, words, when = lost
        if not self.is_main:  # rank 0's runner (the hub) says it first: a spoke that lost its link
            time.sleep(5)  # to the hub is seen as lost by the hub, and the hub is the one still in touch
        result = self._current_result()
        if result.get("lost_node"):
            return  # (another node's runner said so first)
        result.update(
            state="FAILED",
            error=f"node {node} was lost: {words}",
            lost_node=node,
            lost_at=when,
            failed_node=node,
            failed_rank=None,
        )
        atomic_write_json(self.trial_dir / "result.json", {**self._facts(), **result})

    def clean_up(self) -> None:
        if self.peers is not None:
            self.peers.stop()
        if self.watch is not None:
            self.watch.stop()
        if self.mirror is not None:
            self.mirror.stop()
        if self.meeting is not None and self.meeting.store is not None:
            store.stop(self.meeting.store)
        if self.container is not None:
            self.container.clean_up()

    def stop(self) -> None:
        self.leaving()
        if self.ranks is not None:
            self.ranks.stop(self.stop_signal)

    def leaving(self) -> None:
        """Told to stop (or to end): the other nodes are not to take this one's end for a loss."""
        if self.peers is not None:
            self.peers.goodbye()

    def wait(self) -> int:
        code, failed_at = self.ranks.wait()
        if self.interrupted_by_job:
            return code  # told to stop: the requeue (or the end of the allocation) decides
        # a rank that failed because a peer vanished ends a moment before this runner sees it
        lost = self.peers.verdict(wait_s=3.0 if failed_at is not None else 0.0) if self.peers else None
        if lost is not None:
            self._record_lost(lost)
            self._end_job_after_loss()
            raise TrialFailed(f"node {lost[0]} was lost: {lost[1]}")
        self.leaving()
        if self.stalled is not None:
            self._record_stall()
            raise TrialFailed(f"stalled: {describe_stall(self.stalled)}")
        if failed_at is not None:
            self._record_failure(code, failed_at)
            raise TrialFailed(self._failure_words(code, failed_at))
        if self.is_main:
            self._record_completion()
        return 0

    def interrupted(self, exc: Exception) -> None:
        """The run ended by an error outside the program (it was stopped first): rank 0 records it."""
        import signal as signals

        if self.ranks is not None:
            self.ranks.signal_all(signals.SIGKILL)
        if self.is_main:
            result = self._current_result()
            error = f"{type(exc).__name__}: {exc}"
            atomic_write_json(
                self.trial_dir / "result.json", {**self._facts(), **result, "state": "FAILED", "error": error}
            )

    def rank_of(self, index: int) -> int:
        return self.denv.rank + index if self.denv.ranks_here > 1 else self.denv.rank

    def _failure_words(self, code: int, index: int) -> str:
        return f"rank {self.rank_of(index)} on {node_name()} {describe_exit(code)}"

    def _record_failure(self, code: int, index: int) -> None:
        """The first rank to fail writes the trial's FAILED result, with its last lines (the
        others are then stopped, and their exit says less)."""
        lines = self.ranks.tail(index)
        words = self._failure_words(code, index)
        print(f"dlhpc: {words}; its last lines:", *(f"  {line}" for line in lines), sep="\n", file=sys.stderr)
        result = self._current_result()
        if result.get("state") == "FAILED" and result.get("failed_rank") is not None:
            return
        result.update(
            state="FAILED",
            failed_rank=self.rank_of(index),
            failed_node=node_name(),
            exit_code=code,
            last_lines=lines,
        )
        result.setdefault("error", words)
        atomic_write_json(self.trial_dir / "result.json", {**self._facts(), **result})

    def _record_completion(self) -> None:
        """Rank 0's ranks all ended well. A FAILED another node's runner recorded in this run (it
        lost its line to this node, and ended its own ranks) stands: the trial's ranks did not all
        finish, and a COMPLETED over it would carry its lost_node and error."""
        result = self._current_result()
        if result.get("state") in ("COMPLETED", "PRUNED", "FAILED"):
            return  # the built-in trainer wrote its own, fuller result; or a spoke's failure stands
        metrics = _last_metrics(self.trial_dir / "metrics.jsonl")
        atomic_write_json(
            self.trial_dir / "result.json",
            {**self._facts(), **result, "state": "COMPLETED", "exit_code": 0, "final": metrics},
        )

    def _current_result(self) -> dict:
        """result.json as this run wrote it (an earlier run's does not count)."""
        path = self.trial_dir / "result.json"
        try:
            if path.stat().st_mtime < self.started - 1:
                return {}
        except OSError:
            return {}
        return read_json(path, {}) or {}

    def _facts(self) -> dict:
        from dlhpc.spec import program

        return {
            "trial": self.trial_dir.name,
            "program": program.kind(self.data),
            "job_id": self.denv.job_id or None,
            "nodes": self.denv.num_nodes,
            "world_size": self.denv.world_size,
            "hostnames": self.denv.hostnames,
            "rendezvous": self.meeting.address if self.meeting else None,
        }


def _start_event_mirror(trial_dir: Path):
    try:
        from dlhpc.tracking.events import EventMirror

        return EventMirror(trial_dir).start()
    except ImportError as exc:  # checked at submit; a node whose Python differs says so, and trains on
        from dlhpc.tracking import INSTALL

        print(f"dlhpc: no TensorBoard events ({exc}): {INSTALL}", file=sys.stderr, flush=True)
        return None


def _last_metrics(path: Path) -> dict:
    from dlhpc.results.metrics import read_metrics

    try:
        lines, _ = read_metrics(path)
    except OSError:
        return {}
    return lines[-1] if lines else {}


class forwarded_signals:
    """While a trial runs: SIGUSR2 (the time-limit warning) and SIGTERM go on to its ranks, then
    to the handler that was there before (submitit's requeue on rank 0)."""

    SIGNALS = (signal.SIGUSR2, signal.SIGTERM)

    def __init__(self, run: TrialRun):
        self.run, self.previous = run, {}

    def __enter__(self):
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGUSR2:
            self.run.stop()
        elif self.run.ranks is not None:
            self.run.terminated = True  # (a program that exits well on it has not completed)
            self.run.leaving()
            self.run.ranks.signal_all(signal.SIGTERM)
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and signum == signal.SIGTERM:
            raise SystemExit(128 + signum)

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        return False


def run_trial(trial_dir, denv: Identity, on_start=None) -> int:
    """Run the trial's program on this node's ranks and wait; raise TrialFailed when a rank
    fails. `on_start(run)` lets a caller (job.py) reach the run from a signal handler."""
    run = TrialRun(trial_dir, denv)
    if on_start:
        on_start(run)
    with forwarded_signals(run):
        try:
            run.start()
        except (rendezvous.RendezvousError, store.KeeperFailed, OSError) as exc:
            run.interrupted(exc)  # recorded, and said in one line: nothing ran
            run.clean_up()
            raise TrialFailed(str(exc)) from None
        try:
            return run.wait()
        except TrialFailed:
            raise
        except Exception as exc:  # from a signal handler: submitit's "timed-out too many times"
            run.interrupted(exc)
            raise
        finally:
            run.clean_up()
