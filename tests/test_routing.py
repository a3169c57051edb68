"""Routing measured on a bank of everyday questions: people's own wording reaches the path that can answer it.

tests/data/routing_bank.jsonl holds the questions, their VQA question type, the expected route and (where it
matters) subject; its header states the rules. Its split was fixed before routing was tuned, and tuning
looked at the dev half only, so the held-out rate estimates how routing does on wording nobody tuned for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from dialogue import route_question

BANK = Path(__file__).parent / "data" / "routing_bank.jsonl"
GOOD_ENOUGH = {"dev": 0.97, "heldout": 0.95}


def bank() -> list[dict]:
    lines = BANK.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


def routed_right(row: dict) -> bool:
    route = route_question(row["question"])
    return route.kind == row["route"] and ("subject" not in row or route.subject == row["subject"])


@pytest.mark.parametrize("split", ["dev", "heldout"])
def test_everyday_questions_reach_the_path_that_can_answer_them(split: str, figure) -> None:
    rows = [row for row in bank() if row["split"] == split]
    assert len(rows) >= 100  # each half: at least 200 questions in all
    by_type: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for row in rows:
        right = routed_right(row)
        by_type[row["type"]].append(right)
        if not right:
            route = route_question(row["question"])
            misses.append(f"{row['question']!r}: {route.kind}/{route.subject}, "
                          f"wanted {row['route']}/{row.get('subject', '*')}")
    rate = sum(map(sum, by_type.values())) / len(rows)
    figure(f"routing right, {split} half of the question bank ({len(rows)} questions)", rate)
    for kind, results in sorted(by_type.items()):
        figure(f"routing right, {split}, {kind} ({len(results)})", sum(results) / len(results))
    print(f"{split}: {rate:.3f} right; misses:", *misses, sep="\n  ")
    assert rate >= GOOD_ENOUGH[split], "\n".join(misses)


def test_the_bank_covers_each_vqa_question_type_with_both_halves() -> None:
    """A type with no held-out questions would leave the held-out rate blind to it."""
    halves = defaultdict(set)
    for row in bank():
        halves[row["type"]].add(row["split"])
    wanted = {"what color", "how many", "is there", "what is", "where", "what is doing", "yes/no"}
    assert wanted <= set(halves) and all(found == {"dev", "heldout"} for found in halves.values()), halves
