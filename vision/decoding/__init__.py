"""Caption decoding: frozen options, one greedy loop over steps, beam search, nucleus sampling and CLIP-guided
decoding.

Nothing here imports `vision.fast`: a speed path contributes only a step (`steps.Step`), chosen from outside.
"""

from .steps import ForwardStep, Step, StepChooser
from .strategies import METHODS, STRATEGIES, BeamSearch, Caption, DecodingOptions, Greedy, NucleusSampling, decode

__all__ = [
    "METHODS",
    "STRATEGIES",
    "BeamSearch",
    "Caption",
    "DecodingOptions",
    "ForwardStep",
    "Greedy",
    "NucleusSampling",
    "Step",
    "StepChooser",
    "decode",
]
