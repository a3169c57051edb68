"""Write dialogue/data/intents.jsonl: the labelled questions routing's learned classifier (`dialogue.intents`) trains
on, copied from the sets routing was tuned on so that the product never reads tests/ at run time.

    python3 -m tests.data.make_intents_data

Its sources: the question bank's dev half (routing_bank.jsonl), routing_tuning.jsonl,
routing_dev_paraphrases.jsonl and routing_dev5.jsonl (issue 30, round 5). Never routing_paraphrases.jsonl (held
out, measured only), nor the bank's held-out half, nor routing_hard_dev.jsonl and routing_hard_dev5.jsonl (rounds 3
and 5's hard batches, kept to measure the classifier untrained on them); and a question that, tidied, is one of the
measuring sets' (two of the bank's dev half are) is left out, unread.
"""

from __future__ import annotations

import json
from pathlib import Path

from dialogue.tidying import tidy

DATA = Path(__file__).parent
TARGET = DATA.parent.parent / "dialogue" / "data" / "intents.jsonl"
SOURCES = ("routing_bank.jsonl", "routing_tuning.jsonl", "routing_dev_paraphrases.jsonl", "routing_dev5.jsonl")
MEASURED = (
    "routing_paraphrases.jsonl",
    "routing_hard_dev.jsonl",
    "routing_hard_dev4.jsonl",
    "routing_hard_dev5.jsonl",
)
HEADER = """\
# Labelled questions for routing's learned classifier (dialogue/intents.py), one {"question", "kind"} a line.
# Written by tests/data/make_intents_data.py from the sets routing was tuned on: the question bank's dev half,
# routing_tuning.jsonl, routing_dev_paraphrases.jsonl and routing_dev5.jsonl; never from a held-out set.
# Do not edit by hand.
"""


def rows(name: str) -> list[dict]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


def labelled() -> list[dict]:
    measured = {tidy(row["question"]) for name in MEASURED for row in rows(name)}
    found: dict[str, str] = {}
    for name in SOURCES:
        for row in rows(name):
            if row.get("split", "dev") == "dev" and tidy(row["question"]) not in measured | {""}:
                found.setdefault(row["question"], row.get("kind") or row["route"])
    return [{"question": question, "kind": kind} for question, kind in found.items()]


def main() -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in labelled()]
    TARGET.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{TARGET}: {len(lines)} questions")


if __name__ == "__main__":
    main()
