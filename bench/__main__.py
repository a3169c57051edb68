"""python -m bench: the captioning benchmark (see bench/captioning.py)."""

import argparse
from pathlib import Path

from .captioning import DTYPES, default_dtypes, dump, report, run

parser = argparse.ArgumentParser(prog="python -m bench")
parser.add_argument("--json", type=Path, help="also write every figure to this file")
parser.add_argument("--photos", type=int, default=64, help="photos per repeat (default 64)")
parser.add_argument("--repeats", type=int, default=5, help="repeats; medians and ranges over them (default 5)")
parser.add_argument("--clients", type=int, default=16, help="users sending at once in the burst mode (default 16)")
parser.add_argument("--lone", type=int, default=8, help="photos per repeat sent one at a time (default 8)")
parser.add_argument(
    "--dtypes",
    nargs="+",
    choices=sorted(DTYPES),
    help=f"number formats, each for every pipeline (default here: {' '.join(default_dtypes())})",
)
parser.add_argument("--poisson", action="store_true", help="also send photos at random (Poisson) arrival times")
parser.add_argument(
    "--rate",
    type=float,
    help="Poisson photos per second (default: 0.6 x the slowest best-configured pipeline's capacity)",
)
args = parser.parse_args()
if args.photos < args.clients or min(args.photos, args.repeats, args.clients, args.lone) < 1:
    parser.error("--photos must be at least --clients, and every count at least 1")
results = run(args.photos, args.repeats, args.clients, args.lone, args.dtypes, args.poisson, args.rate)
report(results)
if args.json:
    dump(results, args.json)
