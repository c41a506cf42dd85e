"""The ``fm`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_datasets(args: argparse.Namespace) -> int:
    import pandas as pd

    from fm_engine.datasets import bundled_datasets, dataset_overview

    overview = dataset_overview()
    if args.json:
        print(overview.to_json(orient="records", indent=2))
        return 0
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for dataset in bundled_datasets():
            rows = overview[overview["dataset"] == dataset.name]
            print(f"{dataset.name}: {dataset.title}")
            print(f"  source:  {dataset.source}")
            print(f"  license: {dataset.license}")
            columns = ["task", "type", "unit", "rows", "compositions", "t"]
            print("  " + rows[columns].to_string(index=False).replace("\n", "\n  "))
            print()
    print("Citations and processing steps: DATA_SOURCES.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fm", description="fm_engine: composition -> property models.")
    commands = parser.add_subparsers(dest="command", required=True)
    datasets = commands.add_parser("datasets", help="list the bundled datasets (tasks, rows, units, source)")
    datasets.add_argument("--json", action="store_true", help="print machine-readable JSON")
    datasets.set_defaults(handler=_cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
