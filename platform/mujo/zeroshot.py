"""Moved to :mod:`mujo.evaluate.zeroshot` (transitional re-export while the callers move)."""
from mujo.evaluate.zeroshot import *  # noqa: F401,F403
