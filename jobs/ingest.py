"""Ingest a real dataset (or your own) as raw clips for preprocessing: ``<out>/raw/<name>/part-*.parquet`` +
``dataset.json``, local or ``s3://``.

    python jobs/ingest.py --dataset mmfit --source /data/MM-Fit --out runs/real [--option include_no_activity=true]
    python jobs/ingest.py --card my_card.yaml [--source /data/mine] --out s3://bucket/runs/real
    python jobs/ingest.py --list

Datasets and their options: datasets/README.md (one card per dataset in datasets/<name>.yaml). Prints the written
dataset.json (without the full card) as JSON; exit status 2 for a bad card, option or argument.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

# Run from a checkout without installation too (as jobs/_common.py does).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from mujo.adapters import ADAPTERS, CardError, ingest  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset", choices=sorted(a for a in ADAPTERS if a != "byod"),
                        help="a published dataset's adapter")
    parser.add_argument("--card", help="a bring-your-own-data card (YAML); see datasets/README.md")
    parser.add_argument("--source", help="the dataset's folder (default for --card: the card's folder)")
    parser.add_argument("--out", help="run directory (local or s3://); clips go to <out>/raw/<name>/")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="adapter option (repeatable), e.g. --option include_no_activity=true")
    parser.add_argument("--clips-per-part", type=int, default=64)
    parser.add_argument("--list", action="store_true", help="list the adapters and their options, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.list:
        for name, cls in sorted(ADAPTERS.items()):
            print(f"{name}: options {cls.OPTIONS}")
        return 0
    if bool(args.dataset) == bool(args.card):
        print("error: give exactly one of --dataset NAME or --card CARD.yaml", file=sys.stderr)
        return 2
    if not args.out:
        print("error: --out is required", file=sys.stderr)
        return 2
    options = {}
    for item in args.option:
        if "=" not in item:
            print(f"error: --option {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        key, value = item.split("=", 1)
        options[key.strip()] = value
    try:
        doc = ingest(args.dataset, args.source, args.out, card=args.card, clips_per_part=args.clips_per_part,
                     **options)
    except (CardError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in doc.items() if k != "card"}, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
