"""Search (docs/search.md): the search: block's checks, the space and the pruner, and the agents'
bookkeeping on a real Optuna study in a real experiment folder (a program of one's own, run by
the real runner on this machine; no cluster)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write
from dlhpc.spec.load import load_spec_text

PROGRAM = """
import sys
from dlhpc import trial

lr = float(trial.params["lr"])
for epoch in range(1, 5):
    trial.log(epoch=epoch, score=lr * epoch)
    if {asks} and trial.should_prune():
        sys.exit(0)
"""


def search_project(tmp_path: Path, asks=True, extra="", metric="score", trials=6, parallel=2, lost_after_s=5) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "train.py", PROGRAM.format(asks=asks))
    return write(
        folder / "exp.yaml",
        f"""
name: find
program: {{script: train.py}}
params: {{lr: 0.1}}
resources: {{scheduler: local, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
search:
  trials: {trials}
  parallel: {parallel}
  seed: 3
  metric: {metric}
  lost_after_s: {lost_after_s}
  pruner: {{kind: asha, min_epochs: 1, reduction: 2}}
  space:
    params.lr: {{uniform: [0.01, 1.0]}}
{extra}""",
    )


def materialized(spec_path: Path) -> Path:
    """The experiment folder submit would write (its study made), with no job started."""
    from dlhpc.plan import experiment
    from dlhpc.spec.load import load_spec
    from dlhpc.submission import pipeline

    spec = load_spec(spec_path)
    p = experiment.plan(spec)
    p.code, p.image = pipeline.check_inputs(spec)
    return experiment.materialize(p).exp_dir


def work(exp: Path, agent: str):
    from dlhpc.node.identity import Identity
    from dlhpc.search.agent import SearchAgent, Work

    return Work(exp, agent, Identity(), SearchAgent(exp, agent))


def study_states(exp: Path) -> list[str]:
    from dlhpc.search import study

    return [t.state.name for t in study.load(exp, "find").trials]


# ---- the search: block, checked at validate ----

BAD = [
    ("space: {}", "search.space is empty"),
    ("space: {train.lr: {loguniform: [0, 1]}}", "a log scale needs bounds above 0"),
    ("space: {train.batch_size: {choice: [64]}}", "choice needs at least two values"),
    ("trials: 2\n  parallel: 4\n  space: {train.lr: {uniform: [0.1, 1]}}", "4 agents for 2 trials"),
    ("metric: val_acc\n  space: {train.lr: {uniform: [0.1, 1]}}", "the built-in trainer never logs 'val_acc'"),
    ("space: {train.lrate: {uniform: [0.1, 1]}}", "no such spec key (did you mean 'train.lr'?)"),
    ("space: {train.lr: {uniform: [1, 0.1]}}", "the low bound 1 must be below the high bound 0.1"),
    ("space: {train.epochs: {uniform: [1, 3]}}", "search it with {int: [lo, hi]}"),
    ("space: {resources.nodes: {int: [1, 2]}}", "every agent of a search runs in one allocation size"),
    ("sampler: grid\n  space: {train.lr: {uniform: [0.1, 1]}}", "the grid sampler needs a finite space"),
    ("space: {train.lr: {uniform: [0.1, 1], log: true}}", "'log' does not go with uniform"),
    ("space: {train.lr: 0.1}", "needs a distribution"),
    ("pruner: {kind: median, resume: true}\n  space: {train.lr: {uniform: [0.1, 1]}}", "it needs pruner.kind asha"),
]


@pytest.mark.parametrize("body,words", BAD, ids=[w for _, w in BAD])
def test_bad_search_input_is_one_clear_line_at_validate(dlhpc, tmp_path, body, words):
    trials = "" if body.startswith("trials") else "trials: 8\n  parallel: 2\n  "
    spec = write(tmp_path / "s.yaml", f"search:\n  {trials}{body}\n")
    r = dlhpc("validate", spec)
    assert r.code == 2, r
    assert words in r.err, r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 3, r.err


def test_a_search_and_a_sweep_together_is_refused(dlhpc, tmp_path):
    spec = write(
        tmp_path / "s.yaml",
        "sweep: {train.lr: [0.1, 0.2]}\nsearch:\n  trials: 4\n  parallel: 2\n"
        "  space: {train.lr: {uniform: [0.1, 1]}}\n",
    )
    r = dlhpc("validate", spec)
    assert r.code == 2 and "either sweeps a grid or searches, not both" in r.err, r


def test_a_program_of_ones_own_must_name_its_metric(dlhpc, tmp_path):
    spec = search_project(tmp_path, metric="null")
    r = dlhpc("validate", spec)
    assert r.code == 2 and "search.metric is required for a program of your own" in r.err, r


def test_validating_a_search_imports_no_optuna(tmp_path):
    spec = search_project(tmp_path)
    code = (
        f"import sys; from dlhpc.spec.load import load_spec; load_spec({str(spec)!r}); print('optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_search_without_optuna_is_one_line_with_the_fix(dlhpc, tmp_path):
    blocker = write(tmp_path / "noopt" / "optuna.py", "raise ImportError('no optuna here')\n")
    spec = search_project(tmp_path)
    r = dlhpc("submit", spec, "--dry-run", env={"PYTHONPATH": str(blocker.parent)})
    assert r.code == 2 and "search needs Optuna" in r.err and 'pip install "dlhpc[search]"' in r.err, r


def test_defaults_fill_the_search_and_the_direction_follows_the_metric():
    spec = load_spec_text(
        "search:\n  trials: 4\n  parallel: 2\n  metric: test_loss\n  space: {train.lr: {uniform: [0.1, 1]}}\n"
    )
    assert spec.search["direction"] == "minimize"
    assert spec.search["pruner"] == {
        "kind": "asha",
        "min_epochs": 1,
        "reduction": 3,
        "keep_checkpoints": False,
        "resume": False,
    }
    plain = load_spec_text("train: {lr: 0.1}\n")
    assert "search" not in plain.data  # (a spec that does not search keeps its data, and its hash)


# ---- the space and the pruner ----


def test_draws_stay_in_their_bounds_steps_and_choices():
    import optuna

    from dlhpc.search.study import suggest

    spec = load_spec_text(
        """
model: {name: mlp}
search:
  trials: 40
  parallel: 2
  space:
    train.lr: {loguniform: [0.001, 1.0]}
    model.width: {int: [8, 64], step: 8}
    model.hidden: {choice: [[128], [256, 128]]}
    train.momentum: {uniform: [0.5, 0.9], step: 0.1}
"""
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_hidden = set()
    for _ in range(40):
        values = suggest(study.ask(), spec.search)
        assert 0.001 <= values["train.lr"] <= 1.0
        assert values["model.width"] in range(8, 65, 8)
        assert values["model.hidden"] in ([128], [256, 128])
        assert round(values["train.momentum"] * 10, 6) in (5, 6, 7, 8, 9)
        seen_hidden.add(json.dumps(values["model.hidden"]))
    assert len(seen_hidden) == 2


def test_asha_prunes_the_trials_behind_at_each_rung_and_says_what_they_needed():
    import optuna

    from dlhpc.search.agent import _compare
    from dlhpc.search.study import pruner

    spec = load_spec_text(
        "search:\n  trials: 8\n  parallel: 2\n  pruner: {kind: asha, min_epochs: 1, reduction: 2}\n"
        "  space: {train.lr: {uniform: [0.1, 1]}}\n"
    )
    study = optuna.create_study(direction="maximize", pruner=pruner(spec.search))
    verdicts = []
    for value in (0.5, 0.9, 0.2, 0.95):  # one at a time, each reporting at epoch 1 (rung 0)
        trial = study.ask()
        trial.report(value, 1)
        verdicts.append(trial.should_prune())
        if verdicts[-1]:
            facts = _compare(study, trial.number, 1, value, spec.search)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if verdicts[-1] else study.tell(trial, value)
    # of three at the rung, ASHA (reduction 2) keeps the top one: 0.2 needed 0.9; the others were
    # at the top when they reported
    assert verdicts == [False, False, True, False]
    assert facts == {"kind": "asha", "rung": 0, "compared_with": 2, "needed": 0.9, "best": 0.9}


def test_the_optuna_calls_dlhpc_relies_on_are_there():
    """Bounded: an agent reports to a running trial by number (storage lookup + study id)."""
    import optuna

    from dlhpc.search.study import trial_of

    study = optuna.create_study()
    first = study.ask()
    again = trial_of(study, first.number)
    again.report(1.0, 1)
    assert study.trials[0].intermediate_values == {1: 1.0}


# ---- agents on a real study, in a real experiment folder ----


def test_a_search_runs_every_trial_once_and_prunes_the_ones_behind(dlhpc, tmp_path):
    spec = search_project(tmp_path)
    r = dlhpc("run", spec, timeout=300)
    assert r.code == 0, r
    exp = next((tmp_path / "runs").iterdir())
    states = study_states(exp)
    assert len(states) == 6 and set(states) <= {"COMPLETE", "PRUNED"} and "PRUNED" in states, states
    summary = json.loads(dlhpc("summary", exp, "--json").out)
    by_state = summary["studies"][0]["counts"]
    assert by_state == {"COMPLETED": states.count("COMPLETE"), "PRUNED": states.count("PRUNED")}
    best = summary["studies"][0]["best"][0]
    rows = {t["trial"]: t for t in summary["trials"]}
    assert best["score"] == max(t["objective"] for t in rows.values() if t["state"] == "COMPLETED")
    pruned = next(t for t in rows.values() if t["state"] == "PRUNED")
    assert pruned["epochs_done"] < 4 and "pruned at step" in pruned["flags"]
    assert not (exp / pruned["trial"] / "checkpoint.pt").exists()
    why = dlhpc("why", exp, "--trial", pruned["trial"])
    assert "ASHA rung" in why.out and "it needed" in why.out, why


def test_a_program_that_never_asks_is_never_pruned(dlhpc, tmp_path):
    spec = search_project(tmp_path, asks=False, trials=4)
    assert dlhpc("run", spec, timeout=300).code == 0
    exp = next((tmp_path / "runs").iterdir())
    assert study_states(exp) == ["COMPLETE"] * 4
    rows = json.loads(dlhpc("summary", exp, "--json").out)["trials"]
    assert [t["epochs_done"] for t in rows] == [4] * 4


def test_a_program_that_never_logs_the_metric_fails_with_the_fix(dlhpc, tmp_path):
    spec = search_project(tmp_path, metric="val_loss", trials=2, parallel=1)
    r = dlhpc("run", spec, timeout=300)
    exp = next((tmp_path / "runs").iterdir())
    assert study_states(exp) == ["FAIL", "FAIL"]
    assert r.code == 1
    why = dlhpc("why", exp)
    assert "the program logged no val_loss" in why.out and "dlhpc.trial.log(epoch=..., val_loss=...)" in why.out, why


def test_an_agent_killed_between_ask_and_tell_leaves_its_trial_to_another_once(tmp_path):
    exp = materialized(search_project(tmp_path, trials=3, parallel=2, lost_after_s=5))
    number, slot, attempt = work(exp, "agent-0")._take()  # asked, claimed... and the agent dies here
    assert (number, attempt) == (0, 1)
    drawn = json.loads((exp / slot / "trial.json").read_text())["params"]
    other = work(exp, "agent-1")
    second = other._take()
    assert second[:2] == (1, other.slots[1])  # trial 0's claim is fresh: it is not taken over yet
    other._run(*second)
    past = time.time() - 60
    os.utime(exp / slot / "claim.json", (past, past))  # then no sign of life from agent-0 for a minute
    assert other._take() == (0, slot, 2)
    other._run(0, slot, 2)
    assert other._take()[:2] == (2, other.slots[2])  # only then a new trial
    assert study_states(exp)[:2] == ["COMPLETE", "COMPLETE"]
    assert json.loads((exp / slot / "trial.json").read_text())["params"] == drawn  # the same values, run once
    assert json.loads((exp / slot / "result.json").read_text())["state"] == "COMPLETED"
    assert json.loads((exp / slot / "claim.json").read_text())["attempt"] == 2
    epochs = [json.loads(line)["epoch"] for line in (exp / slot / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_a_trial_lost_twice_is_failed_with_the_words_never_dropped(tmp_path):
    exp = materialized(search_project(tmp_path, trials=2, parallel=1, lost_after_s=5))
    _, slot, _ = work(exp, "agent-0")._take()
    claim = exp / slot / "claim.json"
    for agent in ("agent-1", "agent-2"):
        past = time.time() - 60
        os.utime(claim, (past, past))
        taken = work(exp, agent)._take()
        assert taken[:2] == ((0, slot) if agent == "agent-1" else (1, work(exp, agent).slots[1])), taken
    assert study_states(exp)[0] == "FAIL"
    result = json.loads((exp / slot / "result.json").read_text())
    assert result["state"] == "FAILED" and "its agent was lost 2 times" in result["error"]


def test_a_requeued_agent_resumes_its_own_trial(tmp_path):
    exp = materialized(search_project(tmp_path, trials=3, parallel=2))
    first = work(exp, "agent-0")._take()
    assert work(exp, "agent-0")._take() == first  # the rerun of the same agent: its own trial again


def test_the_same_seed_draws_the_same_values(tmp_path):
    drawn = []
    for n in (1, 2):
        exp = materialized(search_project(tmp_path / str(n), trials=3, parallel=1))
        w = work(exp, "agent-0")
        for _ in range(3):
            number, slot, _ = w._take()
            drawn.append(json.loads((exp / slot / "trial.json").read_text())["params"]["params.lr"])
            from dlhpc.search import study

            study.load(exp, "find").tell(number, 0.5)
    assert drawn[:3] == drawn[3:] and len(set(drawn[:3])) == 3


def test_a_search_of_10000_trials_plans_and_shows_status_quickly(dlhpc, tmp_path, budget):
    spec = search_project(tmp_path, trials=10_000, parallel=50)
    t0 = time.monotonic()
    exp = materialized(spec)
    planned = time.monotonic() - t0
    t0 = time.monotonic()
    r = dlhpc("status", exp)
    shown = time.monotonic() - t0
    assert r.out.splitlines()[1].strip().startswith("10,000 trials: 10,000 PENDING"), r.out[:300]
    assert planned < budget(15) and shown < budget(5), (planned, shown)


# ---- on a shared machine (docs/security.md) ----


def test_the_study_is_the_experiments_alone_to_write(tmp_path):
    spec = search_project(tmp_path, extra="share: group\n")
    exp = materialized(spec)
    work(exp, "agent-0")._take()  # the journal, its lock and a claim written
    assert (exp / "study").stat().st_mode & 0o777 == 0o750
    written = [p for p in exp.rglob("*") if not p.is_symlink()]
    assert written and not [p for p in written if p.stat().st_mode & 0o022], [
        (p, oct(p.stat().st_mode)) for p in written if p.stat().st_mode & 0o022
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="gives the experiment to another user (chown)")
def test_best_of_a_colleagues_search_is_refused(dlhpc, tmp_path):
    exp = materialized(search_project(tmp_path))
    for path in [exp, *exp.rglob("*")]:
        os.lchown(path, 65534, 65534)
    r = dlhpc("submit", "--best-of", exp)
    assert r.code == 2 and "dlhpc acts only on your own experiments" in r.err, r


def test_resubmit_of_a_search_whose_agents_are_gone_queues_new_ones(dlhpc, tmp_path):
    from conftest import wait_finished

    exp = materialized(search_project(tmp_path, trials=4, parallel=2))
    work(exp, "agent-0")._take()  # a trial half-taken by an agent that is gone
    past = time.time() - 60
    for claim in exp.glob("*/claim.json"):
        os.utime(claim, (past, past))
    refused = dlhpc("resubmit", exp, "--failed")
    assert refused.code == 2 and "its agents choose the trials" in refused.err, refused
    r = dlhpc("resubmit", exp)
    assert r.code == 0 and "4 trial(s) of the search left: 2 new agents take them" in r.out, r
    report = wait_finished(dlhpc, exp, timeout=120)
    assert {t["state"] for t in report["trials"]} <= {"COMPLETED", "PRUNED"} and len(report["trials"]) == 4
    assert sorted(study_states(exp)) == sorted(
        {"COMPLETED": "COMPLETE", "PRUNED": "PRUNED"}[t["state"]] for t in report["trials"]
    )
    again = dlhpc("resubmit", exp)
    assert again.code == 0 and "nothing to resubmit" in again.out, again


def test_the_trainer_stops_on_a_prune_verdict_but_not_at_its_last_epoch(tmp_path, monkeypatch):
    from dlhpc.search import verdict
    from dlhpc.train.loop import Trainer

    spec = write(
        tmp_path / "s.yaml",
        f"model: {{name: softmax}}\ntrain: {{epochs: 3}}\nruns_dir: {tmp_path / 'runs'}\n"
        "search:\n  trials: 2\n  parallel: 1\n  space: {train.lr: {uniform: [0.1, 1]}}\n",
    )
    exp = materialized(spec)
    tdir = next(p for p in exp.iterdir() if p.name.startswith("000-"))
    trainer = Trainer(tdir)
    verdict.write(tdir, 3, True, value=0.5)
    assert trainer._pruned_at(1) is None  # outside a search nothing is asked
    monkeypatch.setenv(verdict.METRIC_VAR, "test_acc")
    assert trainer._pruned_at(2)["prune"] is True
    assert trainer._pruned_at(3) is None  # its last epoch: it completes, with its value


# ---- ASHA that pauses (pruner.resume): search/asha.py ----


def test_pausing_asha_keeps_the_top_of_each_rung_and_never_judges_fewer_than_reduction():
    from dlhpc.search import asha

    assert asha.rung_steps(1, 3, 27) == [1, 3, 9] and asha.rung_steps(2, 2, 9) == [2, 4, 8]
    assert not asha.in_top(0.9, [0.9], 2, maximize=True)  # alone at the rung: it waits
    assert asha.in_top(0.9, [0.9], 2, maximize=True, at_least=1)  # ...but not at the study's end
    assert asha.in_top(0.9, [0.9, 0.5], 2, maximize=True) and not asha.in_top(0.5, [0.9, 0.5], 2, maximize=True)
    assert asha.in_top(0.1, [0.1, 0.5, 0.7], 3, maximize=False)  # a loss: lower is better
    assert asha.in_top(0.5, [0.9, 0.5, 0.2, 0.1], 2, maximize=True) and not asha.in_top(
        0.2, [0.9, 0.5, 0.2, 0.1], 2, True
    )


def test_resume_is_for_the_built_in_trainer(dlhpc, tmp_path):
    spec = search_project(tmp_path, extra="")
    text = spec.read_text().replace("reduction: 2}", "reduction: 2, resume: true}")
    r = dlhpc("validate", write(spec, text))
    assert r.code == 2 and "resumed from the built-in trainer's checkpoint" in r.err, r


def test_a_paused_trial_is_resumed_from_its_checkpoint_once_it_is_in_the_top(dlhpc, tmp_path):
    # three configurations by the grid sampler, the first asked far better than the others. Alone
    # at epoch 1 it waits there (Optuna's halving would let it run on, unjudged); the second, worse,
    # waits too; now the first is in the top half, and resumes from its checkpoint before a third is
    # asked. At the end, nothing running, the best at the last rung is trained to its end.
    spec = write(
        tmp_path / "s.yaml",
        f"""name: find
model: {{name: softmax}}
train: {{epochs: 3, batch_size: 128}}
data: {{train_subset: 1000}}
resources: {{scheduler: local, time: "00:05:00"}}
runs_dir: {tmp_path / "runs"}
search:
  trials: 3
  parallel: 1
  sampler: grid
  seed: 1
  pruner: {{kind: asha, min_epochs: 1, reduction: 2, resume: true}}
  space:
    train.lr: {{choice: [0.5, 0.0001, 0.00005]}}
""",
    )
    r = dlhpc("run", spec, timeout=300)
    assert r.code == 0, r
    exp = next((tmp_path / "runs").iterdir())
    record = json.loads((exp / "experiment.json").read_text())
    first, *others = (exp / t["id"] for t in record["trials"])
    assert json.loads((first / "trial.json").read_text())["params"] == {"train.lr": 0.5}, "seed 1 asks 0.5 first"
    assert study_states(exp) == ["COMPLETE", "PRUNED", "PRUNED"]
    epochs = [json.loads(line)["epoch"] for line in (first / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # each epoch once: resumed after epoch 1, not started again
    assert json.loads((first / "result.json").read_text())["state"] == "COMPLETED"
    journal = [json.loads(line) for line in (exp / "study" / "journal.log").read_text().splitlines()]
    epoch_2 = next(i for i, op in enumerate(journal) if op["op_code"] == 7 and op["step"] == 2)
    third_asked = [i for i, op in enumerate(journal) if op["op_code"] == 4][2]
    assert epoch_2 < third_asked  # promoted as soon as it was in the top, not at the end
    for other in others:
        pruned = json.loads((other / "result.json").read_text())
        assert pruned["state"] == "PRUNED" and pruned["epochs_done"] == 1 and pruned["pruned"]["settled"]
        assert not (other / "checkpoint.pt").exists()
    why = dlhpc("why", exp, "--trial", others[0].name)
    assert "never in the top to be resumed" in why.out, why
