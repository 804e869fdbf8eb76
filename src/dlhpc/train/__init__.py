"""The payload that runs on the compute nodes: data, models, distributed setup, training loop.

Nothing here is imported by the login-node commands (validate, render, status, summary).
"""
