"""Shared argument parsing for the thin job entrypoints (kept out of the library on purpose: jobs only parse)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Run from a checkout without installation too (ray job submit --working-dir . ships the tree, not the venv).
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
