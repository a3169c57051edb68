"""Speed paths: packed oneDNN linears, the few-row bfloat16 kernel, the lean GPT-2 step and CUDA graphs.

Each plugs into the plain path through one seam and changes no result beyond float rounding: the linears
replace modules in place (`packed_linear`), greedy decoding takes the step `choose_step` picks, and CLIP's
tower at fixed shapes is `graphs.static_image_features`. `vision.pipeline` wires them; nothing in
`vision.models` or `vision.decoding` imports this package. Every private PyTorch or transformers API the
project uses lives here and nowhere else, behind `versions.known_to_work`.
"""

from __future__ import annotations

from .gpt2_steps import Gpt2Steps
from .graphs import StaticStep


def choose_step(lm, batch: int, length: int, *, graphs: bool = False) -> Gpt2Steps | StaticStep | None:
    """The fastest greedy step (a `vision.decoding.steps.Step`) for `batch` captions of `lm` over `length`
    positions, or None for the plain `forward` step (a `vision.decoding.steps.StepChooser`):

    - `graphs`: a static KV cache at fixed batch sizes, each step replayed as a CUDA graph on a GPU;
    - a plain GPT-2 on a CPU: its modules called directly (`Gpt2Steps`), the whole step in one C++ call where
      every linear of a bfloat16 GPT-2 is on bf16_rows' kernel;
    - anything else: None.
    """
    if graphs:
        return StaticStep(lm, batch, length)
    if Gpt2Steps.fits(lm):
        return Gpt2Steps(lm, batch, length)
    return None


def plain_step(lm, batch: int, length: int, *, graphs: bool = False) -> StaticStep | None:
    """`choose_step` without the lean GPT-2 step, where it measured slower (`calibration`): fixed shapes when
    asked, else the plain `forward` step."""
    return StaticStep(lm, batch, length) if graphs else None


def lone_step(lm, batch: int, length: int, *, graphs: bool = False) -> Gpt2Steps | StaticStep | None:
    """`choose_step` for a lone caption, `plain_step` for a batch: where the lean step won a lone photo and lost
    a batch of them (`calibration`)."""
    chooser = choose_step if batch == 1 else plain_step
    return chooser(lm, batch, length, graphs=graphs)


__all__ = ["choose_step", "lone_step", "plain_step"]
