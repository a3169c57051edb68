"""`clipchat bench`: an operator sizes a machine with the models they configured (here, the test world's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


def test_clipchat_bench_measures_the_configured_models_and_suggests_a_batch(
    world_dir: Path, tmp_path: Path, monkeypatch, capsys, figure
) -> None:
    from bot.ops.answer_sizing import answer_lines
    from bot.ops.cli import main

    for name, value in {
        "CLIPCHAT_MODELS": str(world_dir),
        "CLIPCHAT_CACHE_DIR": str(tmp_path),
        "CLIPCHAT_DEVICE": "cpu",
        "CLIPCHAT_MAX_BATCH": "8",
        "HF_HUB_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["bench", "--photos", "16", "--concurrency", "1,16", "--questions", "0"]) == 0
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)  # the figures, for whoever reads the test log (pytest -s)
    assert f"models {world_dir}" in out and "1280x960 JPEG, quality 85" in out
    rows = [[float(cell) for cell in line.split()] for line in out.splitlines() if re.fullmatch(r"[\d. ]+", line)]
    (alone, crowd), sweep = rows[:2], rows[2:]
    assert (alone[0], alone[1]) == (1, 8) and (crowd[0], crowd[1]) == (16, 8)  # users, the configured batch
    assert alone[5] == 1.0 < crowd[5] <= 8  # one user never shares a batch; sixteen do, up to the setting
    assert all(row[2] > 0 and 0 < row[3] <= row[4] for row in rows)  # photos/s, p50 <= p95
    assert [row[1] for row in sweep] == [1, 2, 4, 8, 16] and all(row[0] == 16 for row in sweep)
    suggested = int(re.search(r"Suggested CLIPCHAT_MAX_BATCH=(\d+): ", out).group(1))
    best = max(row[2] for row in sweep)
    within = [int(row[1]) for row in sweep if row[2] >= 0.95 * best - 0.01]  # the table rounds to 0.01
    assert suggested == min(within)
    figure("clipchat bench on the test world: photos/s at 1 and 16 users", f"{alone[2]:.1f}, {crowd[2]:.1f}")
    figure("clipchat bench on the test world: suggested CLIPCHAT_MAX_BATCH", str(suggested))
    assert "follow-ups" not in out  # --questions 0: no answer rows

    assert main(["bench", "--photos", "4", "--concurrency", "2", "--questions", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["concurrency"] for row in report["rows"]] == [2]
    assert [row["max_batch"] for row in report["batch_sizes"]] == [1, 2]
    assert report["suggested_max_batch"] in (1, 2) and report["reason"]
    answers = report["answers"]
    assert answers["questions"] == 4 and answers["by_answer_model"] >= 1  # the world's chat model wrote some
    assert 0 < answers["first_p50_ms"] <= answers["whole_p95_ms"] and answers["questions_per_s"] > 0
    assert answers["whole_p50_ms"] <= answers["whole_p95_ms"] and not answers["sees_images"]
    assert answers["peak_rss_mb"] > 100  # CLIP, the captioner and the chat model, at least
    assert "4 follow-ups, one at a time" in "\n".join(answer_lines(answers))
    figure(
        "clipchat bench on the test world: answers, first draft / whole p50 ms",
        f"{answers['first_p50_ms']:.0f} / {answers['whole_p50_ms']:.0f}",
    )


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bench", "--photos", "4", "--concurrency", "1,16"], "concurrency"),
        (["bench", "--concurrency", "0"], "concurrency"),
        (["bench", "--questions", "-1"], "questions"),
    ],
)
def test_clipchat_bench_refuses_what_cannot_be_measured(argv: list[str], named: str, capsys) -> None:
    from bot.ops.cli import main

    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusal
        code = stop.code
    assert code == 2 and named in capsys.readouterr().err
