"""The site's policy, enforced when a spec is loaded: before any scheduler is asked.

A site file can declare under `site.policy` the partitions, accounts and QOS jobs may use,
per-trial maxima (nodes, GPUs per node, GPUs in all, walltime, memory), the most trials one
submission may have, the container images jobs may run in, and keys every job must set. A
violation names the spec's file:line, the rule and the site file's line it came from, and is
exit 2. The policy governs what is submitted
to a cluster (submit, resubmit, render and validate say so first), every trial of a sweep; a
spec that runs on this machine alone (the local backend) is not held to it, and commands that
submit nothing (status, summary, cancel...) never consult it. `resources.extra` cannot get
around it: it may not repeat a directive dlhpc writes (schedulers/directives.py).
"""

from dlhpc.errors import UserError
from dlhpc.spec.schema import mem_megabytes, parse_time

ALLOWED = (("partitions", "partition"), ("accounts", "account"), ("qos", "qos"))
MAXIMA = (
    ("max_nodes", "nodes", int),
    ("max_gpus_per_node", "gpus_per_node", int),
    ("max_time", "time", parse_time),
    ("max_mem", "mem", mem_megabytes),
)


def rules(spec) -> list[tuple[str, object, str]]:
    """(rule, value, where the site file set it) for every rule in force."""
    policy = spec.site.get("policy") or {}
    out = []
    for key, value in policy.items():
        if value not in (None, []):
            out.append((key, value, _site_where(spec, key)))
    return out


def _site_where(spec, key) -> str:
    origin = spec.site_origins.get(("site", "policy", key))
    return f"{origin}: site.policy.{key}" if origin else f"site.policy.{key}"


def _resource_values(spec, key) -> list[tuple[object, str]]:
    """Every value a resource key takes in this spec (swept values too), with where it was set."""
    from dlhpc.spec.yamlsource import where

    swept = spec.sweep.get(f"resources.{key}")
    if swept is not None:
        return [
            (v, where(spec.origins, ("sweep", f"resources.{key}", i)).rsplit(": ", 1)[0]) for i, v in enumerate(swept)
        ]
    return [(spec.data["resources"][key], where(spec.origins, ("resources", key)).rsplit(": ", 1)[0])]


def violations(spec) -> list[str]:
    """Every way the spec breaks its site's policy, each with where it is set and the fix."""
    policy = spec.site.get("policy") or {}
    found = []
    for check in (_not_allowed, _above_maxima, _too_many_gpus, _too_many_trials, _image_not_allowed, _missing):
        found += check(spec, policy)
    return found


def _not_allowed(spec, policy: dict) -> list[str]:
    found = []
    for rule, key in ALLOWED:
        allowed = policy.get(rule)
        for value, at in _resource_values(spec, key) if allowed else []:
            for name in str(value).split(",") if value else []:
                if name not in allowed:
                    found.append(
                        f"{at}: resources.{key} {name!r} is not allowed by the site policy "
                        f"(allowed: {', '.join(allowed)}; {_site_where(spec, rule)}). "
                        f"Fix: set resources.{key} to one of them"
                    )
    return found


def _above_maxima(spec, policy: dict) -> list[str]:
    found = []
    for rule, key, measure in MAXIMA:
        limit = policy.get(rule)
        for value, at in _resource_values(spec, key) if limit is not None else []:
            if measure(value) > measure(limit):
                found.append(
                    f"{at}: resources.{key} {value} is above the site's maximum of {limit} "
                    f"({_site_where(spec, rule)}). Fix: ask for at most {limit}"
                )
    return found


def _too_many_gpus(spec, policy: dict) -> list[str]:
    if policy.get("max_total_gpus") is None:
        return []
    nodes = max(v for v, _ in _resource_values(spec, "nodes"))
    gpus, at = max(_resource_values(spec, "gpus_per_node"), key=lambda item: item[0])
    if nodes * gpus <= policy["max_total_gpus"]:
        return []
    return [
        f"{at}: {nodes} node(s) x {gpus} GPUs = {nodes * gpus} GPUs for one trial, above the "
        f"site's maximum of {policy['max_total_gpus']} ({_site_where(spec, 'max_total_gpus')}). "
        "Fix: fewer nodes or GPUs per node"
    ]


def _too_many_trials(spec, policy: dict) -> list[str]:
    if policy.get("max_array_size") is None:
        return []
    from dlhpc.spec.sweep import count_trials
    from dlhpc.spec.yamlsource import where

    if spec.search:  # a search's array is its agents; each runs many trials in turn
        n = spec.search["parallel"]
        if n <= policy["max_array_size"]:
            return []
        return [
            f"{where(spec.origins, ('search', 'parallel')).rsplit(': ', 1)[0]}: {n} agents, above the site's "
            f"maximum array of {policy['max_array_size']} ({_site_where(spec, 'max_array_size')}). "
            "Fix: fewer search.parallel"
        ]
    n = count_trials(spec)
    if n <= policy["max_array_size"]:
        return []
    return [
        f"{where(spec.origins, ('sweep',)).rsplit(': ', 1)[0]}: the sweep has {n} trials, above "
        f"the site's maximum of {policy['max_array_size']} per submission "
        f"({_site_where(spec, 'max_array_size')}). Fix: sweep fewer values, or submit in parts"
    ]


def _image_not_allowed(spec, policy: dict) -> list[str]:
    images = policy.get("container_images")
    image = spec.data["env"]["container"].get("image")
    if not images or image in images:
        return []
    from dlhpc.spec.yamlsource import where

    at = where(spec.origins, ("env", "container", "image")).rsplit(": ", 1)[0]
    said = f"image {image!r}" if image else "no container image"
    return [
        f"{at}: env.container: {said} is not allowed by the site policy (allowed: {', '.join(images)}; "
        f"{_site_where(spec, 'container_images')}). Fix: set env.container.image to one of them"
    ]


def _missing(spec, policy: dict) -> list[str]:
    found = []
    for key in policy.get("required") or []:
        try:
            value = spec.get(key)
        except (KeyError, TypeError):
            value = None
        if value in (None, "", []):
            found.append(
                f"{spec.source}: {key} is required on this cluster ({_site_where(spec, 'required')}). "
                f"Fix: set {key} in the spec, with --set {key}=..., or in ~/.config/dlhpc/config.yaml"
            )
    return found


def enforce(spec) -> None:
    """Refuse a spec any of whose trials would go to a cluster against the policy (a sweep over
    resources.scheduler included); local-only specs are not held to it."""
    from dlhpc.schedulers import backend

    schedulers = {v for v, _ in _resource_values(spec, "scheduler")}
    if not spec.site.get("policy") or all(backend(name).runs_here for name in schedulers):
        return
    found = violations(spec)
    if found:
        raise UserError("the site policy refuses this spec:\n  " + "\n  ".join(found))
