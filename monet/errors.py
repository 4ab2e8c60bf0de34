"""Errors that reach the user: each message names the file or value and the fix."""


class MonetError(ValueError):
    """A problem with the user's input (data, config), reported without a deep traceback."""


class DataError(MonetError):
    """The data could not be found, read or decoded."""


class ConfigError(MonetError):
    """A configuration value cannot work (for example an image size a network cannot produce)."""
