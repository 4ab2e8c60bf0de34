"""Errors that reach the user: each message names the file or value and the fix."""


class MonetError(ValueError):
    """A problem with the user's input (data, config), reported without a deep traceback."""


class DataError(MonetError):
    """The data could not be found, read or decoded."""


class ConfigError(MonetError):
    """A configuration value cannot work (for example an image size a network cannot produce)."""


class Interrupted(Exception):  # noqa: N818 - what the user sees: "monet: Interrupted ..."
    """A signal (SIGTERM: a cluster's time limit, a preemption) stopped sampling or `predict`
    between two steps; what was written before it is complete."""
