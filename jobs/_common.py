"""Shared argument parsing for the thin job entrypoints (kept out of the library on purpose: jobs only parse)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

# Run from a checkout without installation too (a submitted job's working_dir is the tree, not the venv; the
# workers get the package from py_modules in jobs/runtime_env.yaml).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from mujo.config import ConfigError, MainConfig, load_config  # noqa: E402


def job_name() -> str:
    return os.path.splitext(os.path.basename(sys.argv[0]))[0] or "job"


def parse(description: str) -> MainConfig:
    """Parse ``--config``/``--set``/``--verbose``, validate the config (exit 2 with the problems), then route the
    output (:mod:`mujo.console`): stage and progress lines on the terminal, everything into the run's log file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config (see jobs/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set pretrain.epochs=3 (repeatable)")
    parser.add_argument("--verbose", action="store_true",
                        help="print everything Ray and its workers print (by default it goes to <run>/logs/ only)")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    from mujo import console

    console.setup(job_name(), cfg.run_dir, verbose=args.verbose)
    logging.getLogger("mujo").info("▶ %s  (run %s)", job_name(), cfg.run_dir)
    return cfg


def evaluation_inputs(cfg: MainConfig, plan):
    """For the evaluation jobs: start storage and Ray, then (pretrained artefact, the evaluated dataset's manifest,
    the pretraining corpus's manifest when the plan's calibrations need it, else None)."""
    from mujo.run import RunLayout
    from mujo.workflows import ensure_manifest, prepare

    run_dir = prepare(cfg)
    artefact = cfg.evaluate.pretrained or RunLayout(run_dir).pretrained
    manifest = ensure_manifest(cfg, plan.dataset)
    reference = ensure_manifest(cfg, plan.reference_dataset) if plan.needs_reference else None
    return artefact, manifest, reference


def evaluation_job(description: str, fanout: bool, zero_shot: bool | None) -> None:
    """The evaluation jobs (evaluate, fanout, zeroshot): the config's plan, restricted to the fan-out and/or
    zero-shot, run on one pretrained artefact (:func:`mujo.evaluate.evaluate`), its table printed."""
    from mujo.evaluate import evaluate
    from mujo.run import EvaluationPlan

    cfg = parse(description)
    plan = EvaluationPlan.from_config(cfg, fanout=fanout, zero_shot=zero_shot)
    artefact, manifest, reference = evaluation_inputs(cfg, plan)
    print_results(evaluate(cfg, artefact, manifest, reference, plan))


def run(main) -> None:
    """Run a job's ``main``; a config or storage problem found once it runs (an unreachable bucket, refused
    credentials, settings a submitted job's workers would not see) ends it with the message, exit code 2."""
    from mujo.adapters.cards import CardError
    from mujo.errors import InputError, RunLocked
    from mujo.pipelines.preprocess import QuarantineExceeded
    from mujo.storage import StorageError

    from mujo import console

    t0 = time.monotonic()
    try:
        main()
        logging.getLogger("mujo").info("✔ %s  %.1f s", job_name(), time.monotonic() - t0)
    except (ConfigError, StorageError, QuarantineExceeded, InputError, RunLocked, CardError) as exc:
        console.get().error(f"error: {exc}")
        sys.exit(2)


def echo(text: str = "") -> None:
    """A result line for the person (the terminal, and the run's log file)."""
    from mujo import console

    console.get().echo(text)


def print_results(out: dict) -> None:
    """An evaluation stage's table and where its files went."""
    echo()
    echo(out["table"])
    echo(f"results under {out['results']}")
