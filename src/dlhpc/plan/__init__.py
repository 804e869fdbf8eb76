"""From a spec to a plan: the trials' job scripts (Jinja templates, sandboxed), their cost, the run directory."""
