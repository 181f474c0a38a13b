"""Shared by the model-path jobs (finetune, predict, export, embed): their own errors end the job with the message
and exit code 2, like a config or storage problem (no bare traceback)."""

from __future__ import annotations

import sys

from _common import run


def guarded(main) -> None:
    """``_common.run(main)``, with an unusable artefact or input (a message naming the file and the fix) ending
    the job the same way."""
    from mujo.models.artefact import ArtefactError
    from mujo.pipelines.predict import InputError

    def wrapped() -> None:
        try:
            main()
        except (ArtefactError, InputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    run(wrapped)
