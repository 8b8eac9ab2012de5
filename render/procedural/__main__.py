"""`python -m render.procedural --out DIR --count N --seed S [--categories a,b] [--no-textures] [--no-shapes]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from render.procedural.naming import DEFAULT_MIX, GENERATORS, parse_categories

log = logging.getLogger("render.procedural")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m render.procedural",
                                     description="Seeded procedural animated assets (GLB, cc0).")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .glb files")
    parser.add_argument("--count", type=int, default=8, help="how many assets")
    parser.add_argument("--seed", type=int, default=0, help="one uid is always the same file")
    parser.add_argument("--categories", default=None,
                        help=f"comma-separated mix of {', '.join(GENERATORS)} (a name twice = twice as often); "
                             f"default {','.join(DEFAULT_MIX)}")
    parser.add_argument("--no-textures", action="store_true", help="ablation: flat colours instead of image textures")
    parser.add_argument("--no-shapes", action="store_true", help="ablation: no concavities, thin parts, height fields")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count}")
    try:
        mix = parse_categories(args.categories)
    except ValueError as exc:
        parser.error(f"--categories: {exc}")
    from contracts.logs import setup_logging  # the one place render.procedural reads the logging setup

    setup_logging(args.verbose)
    from render.procedural.build import generate_assets

    paths = generate_assets(args.out, args.count, args.seed, categories=mix, textures=not args.no_textures,
                            shapes=not args.no_shapes, progress=True)
    log.info("wrote %d assets to %s", len(paths), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
