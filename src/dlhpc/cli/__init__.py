"""The command line: argument parsing and printing over the API and the pipeline."""
