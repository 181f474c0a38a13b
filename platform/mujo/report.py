"""Moved to :mod:`mujo.evaluate.report` (transitional re-export while the callers move)."""
from mujo.evaluate.report import *  # noqa: F401,F403
