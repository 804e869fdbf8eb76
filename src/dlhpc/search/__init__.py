"""Adaptive search (docs/search.md): the Optuna study in the experiment folder (study.py), the
agents that work it from array tasks (agent.py), the verdicts they pass to a running trial
(verdict.py) and what the commands read back (results.py). Only study.py and agent.py import
Optuna, and only when a search runs or is asked about."""
