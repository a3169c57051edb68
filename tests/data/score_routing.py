"""Score routing on a set of labelled questions, as the routing tests do (route and subject), without CLIP.

    python3 -m tests.data.score_routing routing_hard_dev4.jsonl [--misses] [--counts-only]

--counts-only prints figures and nothing of the questions: for the held-out set, whose rows are never read.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from dialogue import route_question

DATA = Path(__file__).parent
GROUNDED = {"colour", "count", "presence", "identify"}


def main(argv: list[str]) -> None:
    name, flags = argv[0], set(argv[1:])
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    wrong_route = wrong_subject = 0
    misses = []
    for row in questions:
        route = route_question(row["question"])
        right = route.kind == row["kind"] and ("subject" not in row or route.subject == row["subject"])
        by_kind[row["kind"]].append(right)
        if not right and route.kind in GROUNDED:
            if route.kind != row["kind"]:
                wrong_route += 1
            else:
                wrong_subject += 1
        if not right:
            misses.append(
                f"{row['question']!r}: {route.kind}/{route.subject}, wanted {row['kind']}/{row.get('subject')}"
            )
    found = sum(map(sum, by_kind.values()))
    print(f"{name}: {found}/{len(questions)} = {found / len(questions):.3f}")
    print("  " + ", ".join(f"{kind} {sum(v)}/{len(v)}" for kind, v in sorted(by_kind.items())))
    print(f"  wrong grounded routes {wrong_route}, right grounded route with a wrong subject {wrong_subject}")
    if "--misses" in flags and "--counts-only" not in flags:
        print(*misses, sep="\n  ")


if __name__ == "__main__":
    main(sys.argv[1:])
