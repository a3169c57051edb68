"""A training run's loss history: saved as JSON and a PNG curve, and read for "train longer".

Without it an operator cannot tell an undertrained captioner from a finished one: on a small set in a new
caption style, 480 steps gave 3 exact captions of 120 and 900 steps 116, and nothing said which was which.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

HISTORY = "loss-history.json"
CURVE = "loss-curve.png"

# "Still falling" (documented in docs/models.md): over the last WINDOW epochs (at least 3, or a fifth
# of the run when that is more) validation loss fell by more than FALLING_MARGIN of where it stood, and at least
# FALLING_FLOOR nats per token, and the last epoch is about the best so far (within the same margin: a run that has
# begun to overfit needs stopping sooner, not more epochs). The window, rather than the last epoch alone, because
# the linear schedule takes the learning rate to zero at the end, which flattens the last epoch of every run, an
# undertrained one too; the floor keeps the wobbles of an almost-zero loss from counting.
FALLING_MARGIN = 0.005
FALLING_FLOOR = 0.002
MIN_WINDOW = 3


@dataclass
class EpochLoss:
    epoch: int  # 1-based
    steps: int  # optimizer steps taken by the end of this epoch, all epochs counted
    train_loss: float  # mean cross-entropy per batch over the epoch, nats per token, in training mode
    validation_loss: float | None  # mean per token over the held-out images, eval mode; None without validation


@dataclass
class LossHistory:
    initial_validation_loss: float | None = None  # before the first step: the baseline the first epoch beats
    validation_images: int = 0
    training_images: int = 0
    epochs: list[EpochLoss] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> LossHistory:
        return cls(
            data.get("initial_validation_loss"),
            data.get("validation_images", 0),
            data.get("training_images", 0),
            [EpochLoss(**row) for row in data.get("epochs", [])],
        )

    def to_dict(self) -> dict:
        return asdict(self)


def still_falling(history: LossHistory, epochs_asked: int) -> str | None:
    """The "train longer" warning, one sentence with the numbers, when validation loss was still falling at the end;
    None when it had levelled off or risen, or there was no validation."""
    losses = [row.validation_loss for row in history.epochs if row.validation_loss is not None]
    if not losses or len(losses) < len(history.epochs):  # an epoch without validation: nothing to compare
        return None
    series = losses if history.initial_validation_loss is None else [history.initial_validation_loss, *losses]
    window = min(max(MIN_WINDOW, -(-len(losses) // 5)), len(series) - 1)  # epochs; the initial loss starts one
    if window < 1:
        return None
    start, last, best = series[-window - 1], series[-1], min(series)

    def margin(loss: float) -> float:
        return max(FALLING_MARGIN * loss, FALLING_FLOOR)

    if start - last <= margin(start) or last - best > margin(best):
        return None
    return (
        f"validation loss was still falling at the end ({start:.4f} -> {last:.4f} over the last "
        f"{window} epoch{'s' if window > 1 else ''}): train longer, e.g. --epochs {2 * epochs_asked}"
    )


def save_history(history: LossHistory, out_dir: Path) -> tuple[Path, Path]:
    """Write the JSON history and the PNG curve beside the checkpoint; returns their paths."""
    json_path, png_path = out_dir / HISTORY, out_dir / CURVE
    partial = json_path.with_suffix(".partial")
    partial.write_text(json.dumps(history.to_dict(), indent=2))
    partial.replace(json_path)  # an interrupted write leaves the previous epoch's history whole
    _plot(history, png_path)
    return json_path, png_path


def _plot(history: LossHistory, path: Path) -> None:
    # The Agg canvas, not pyplot: files only (no display on a training server), no global figure state or backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = [row.steps for row in history.epochs]
    axes.plot(steps, [row.train_loss for row in history.epochs], marker="o", label="training")
    validation = [(row.steps, row.validation_loss) for row in history.epochs if row.validation_loss is not None]
    if history.initial_validation_loss is not None:
        validation.insert(0, (0, history.initial_validation_loss))
    if validation:
        axes.plot(*zip(*validation), marker="o", label=f"validation ({history.validation_images} images)")
    axes.set_xlabel("optimizer steps")
    axes.set_ylabel("cross-entropy (nats per token)")
    axes.set_title("captioner training loss, one point per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    partial = path.with_name(path.stem + ".partial.png")
    figure.savefig(partial, format="png")
    partial.replace(path)
