"""Shared plumbing of a run: seeds and RNG state (seeding), the run folder (rundir), the W&B logger
(loggers), network reachability (connectivity), the allocator setting (malloc) and the one place
that uses library internals (compat)."""
