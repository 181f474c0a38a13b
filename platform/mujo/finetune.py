"""Moved to :mod:`mujo.evaluate.finetune` (transitional re-export while the callers move)."""
from mujo.evaluate.finetune import *  # noqa: F401,F403
