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


def prepare_storage(cfg) -> str:
    """Storage settings and checks of ``mujo.workflows.prepare`` without starting Ray (the model-path jobs check
    their artefact and input first, and start Ray only when they have work for it); returns the run folder."""
    from mujo import storage
    from mujo.raysession import check_job_storage_env, check_job_storage_root

    check_job_storage_root(cfg.storage.root)
    before = storage.environment()
    storage.configure(cfg.storage.endpoint_url, cfg.storage.region)
    check_job_storage_env({k: v for k, v in storage.environment().items() if before.get(k) != v})
    storage.check_writable(cfg.run_dir)
    return cfg.run_dir
