"""For admins, against the live SLURM cluster with a site file: no training on the login node
by accident, the site policy at validate time, templates checked in one command, usage."""

from conftest import POLICY, ROOT, fake_commands, site, write


def test_shipped_workshop_specs_follow_the_site_scheduler(dlhpc, tmp_path):
    env = site(tmp_path, "resources:\n  scheduler: slurm\n")
    for name in ("softmax", "mlp", "lenet5", "cnn", "speedrun"):
        r = dlhpc("render", ROOT / "jobs" / f"mnist-{name}.yaml", env=env)
        assert r.code == 0 and "#SBATCH --job-name" in r.out, (name, r)


def test_site_policy_refuses_at_validate_time_with_both_lines(dlhpc, tmp_path):
    env = site(tmp_path, POLICY)
    spec = write(
        tmp_path / "big.yaml",
        "name: big\nresources:\n  partition: short\n  nodes: 4\n  account: rich\n"
        "  time: '02:00:00'\n  mem: 16G\n  gpus_per_node: 2\n"
        "sweep:\n  train.seed: [0, 1, 2, 3, 4]\n",
    )
    r = dlhpc("validate", spec, env=env)
    assert r.code == 2 and "Traceback" not in r.err, r
    lines = r.err.splitlines()
    expect = [
        ("big.yaml:3", "partition 'short'", "site.yaml:5"),
        ("big.yaml:5", "account 'rich'", "site.yaml:6"),
        ("big.yaml:4", "nodes 4", "site.yaml:7"),
        ("big.yaml:6", "time 02:00:00", "site.yaml:10"),
        ("big.yaml:7", "mem 16G", "site.yaml:11"),
        ("big.yaml:8", "8 GPUs for one trial", "site.yaml:9"),
        ("big.yaml:9", "5 trials", "site.yaml:12"),
    ]
    for spec_at, what, site_at in expect:
        assert any(spec_at in line and what in line and site_at in line for line in lines), (spec_at, what, r.err)
    missing = dlhpc("validate", write(tmp_path / "noacct.yaml", "name: n\n"), env=env)
    assert missing.code == 2 and "resources.account is required" in missing.err and "site.yaml:13" in missing.err
    ok = dlhpc("validate", write(tmp_path / "ok.yaml", "name: ok\nresources: {account: workshop}\n"), env=env)
    assert ok.code == 0, ok
    local = dlhpc("validate", write(tmp_path / "local.yaml", "name: l\nresources: {scheduler: local}\n"), env=env)
    assert local.code == 0, local  # the policy governs cluster jobs, not this machine


def test_site_policy_refuses_before_any_scheduler_call(dlhpc, tmp_path):
    calls = tmp_path / "calls"
    fake = fake_commands(tmp_path, **{c: f"echo {c} >> {calls}; exit 1" for c in ("sbatch", "scontrol", "sacct")})
    r = dlhpc(
        "submit",
        write(tmp_path / "s.yaml", "name: s\nresources: {nodes: 3, account: workshop}\n"),
        "--runs-dir",
        tmp_path / "runs",
        env={**fake, **site(tmp_path, POLICY)},
    )
    assert r.code == 2 and "nodes 3 is above the site's maximum of 2" in r.err, r
    assert not calls.exists() and not (tmp_path / "runs").exists()
