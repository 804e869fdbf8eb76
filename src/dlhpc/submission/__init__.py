"""Submitting a plan: the one pipeline submit, resubmit and the API share; its journal, locks and guards."""
