"""The command line: `python -m monet` (main.py: MonetCLI, the run callbacks and defaults) and the
checks that refuse a config before anything is built (checks.py)."""
