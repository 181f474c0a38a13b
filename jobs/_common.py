"""Shared argument parsing for the thin job entrypoints (kept out of the library on purpose: jobs only parse)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Run from a checkout without installation too (a submitted job's working_dir is the tree, not the venv; the
# workers get the package from py_modules in jobs/runtime_env.yaml).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from mujo.config import ConfigError, MainConfig, load_config  # noqa: E402


def parse(description: str) -> MainConfig:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="YAML config (see jobs/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set pretrain.epochs=3 (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("ray", "ray.data", "ray.train", "ray.tune", "filelock", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def evaluation_inputs(cfg: MainConfig, calibrations: list[str]):
    """For the evaluation jobs: start storage and Ray, then (pretrained artefact, the evaluated dataset's manifest,
    the pretraining corpus's manifest when a calibration needs it, else None)."""
    from mujo import storage
    from mujo.workflows import ensure_manifest, prepare

    run_dir = prepare(cfg)
    artefact = cfg.evaluate.pretrained or storage.join(run_dir, "pretrain", "model")
    manifest = ensure_manifest(cfg, cfg.evaluate.dataset)
    needs_reference = any(c != "none" for c in calibrations)
    reference = ensure_manifest(cfg, cfg.pretrain.dataset) if needs_reference else None
    return artefact, manifest, reference


def run(main) -> None:
    """Run a job's ``main``; a config or storage problem found once it runs (an unreachable bucket, refused
    credentials, settings a submitted job's workers would not see) ends it with the message, exit code 2."""
    from mujo.adapters.cards import CardError
    from mujo.errors import InputError, RunLocked
    from mujo.pipelines.preprocess import QuarantineExceeded
    from mujo.storage import StorageError

    try:
        main()
    except (ConfigError, StorageError, QuarantineExceeded, InputError, RunLocked, CardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def print_results(out: dict) -> None:
    """An evaluation stage's table and where its files went."""
    print()
    print(out["table"])
    print(f"results under {out['results']}")
