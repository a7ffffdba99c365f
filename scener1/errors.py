"""Errors that carry a one-line message meant for the user.

The CLI turns every :class:`ScenerError` into ``scener1: error: <message>`` and exit code 2; anything
else is a bug and keeps its traceback.
"""


class ScenerError(Exception):
    """Base class of the errors a user can cause and fix (bad paths, bad data, bad options)."""


class SceneError(ScenerError):
    """A scene cannot be opened or read: missing files, unknown layout, corrupt data."""


class ConfigError(ScenerError):
    """An option or configuration value is invalid."""
