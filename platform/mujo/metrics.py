"""Moved to :mod:`mujo.evaluate.metrics` (transitional re-export while the callers move)."""
from mujo.evaluate.metrics import *  # noqa: F401,F403
