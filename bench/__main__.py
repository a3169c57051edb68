"""python -m bench [--json PATH] [--photos N]: the captioning benchmark (see bench/captioning.py)."""

import argparse
from pathlib import Path

from .captioning import dump, report, run

parser = argparse.ArgumentParser(prog="python -m bench")
parser.add_argument("--json", type=Path, help="also write the figures to this file")
parser.add_argument("--photos", type=int, default=32, help="photos sent at concurrency 16 (default 32)")
parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="clipchat's number format (default: what the bot picks on this CPU)")
args = parser.parse_args()
results = run(args.photos, dtype_name=args.dtype)
report(results)
if args.json:
    dump(results, args.json)
