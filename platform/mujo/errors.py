"""Errors a user can fix, as one line each: the jobs print the message and exit with status 2 (no traceback).

Every class here (and :class:`mujo.config.ConfigError`, :class:`mujo.storage.StorageError`) says what is wrong,
where (the file, the setting, the endpoint) and how to fix it.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used as it is: an empty or missing folder, an unparsable metadata file, a name that
    would leave its folder. The message names the file and the fix."""


class RunLocked(RuntimeError):
    """Another job is writing the same run folder (see :mod:`mujo.runlock`)."""


__all__ = ["InputError", "RunLocked"]
