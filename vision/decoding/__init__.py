"""Caption decoding: frozen options, one greedy loop, beam search, nucleus sampling and CLIP-guided decoding.

Nothing here imports `vision.fast`: a speed path contributes only a step, handed in from outside.
"""

from .strategies import METHODS, STRATEGIES, BeamSearch, Caption, DecodingOptions, Greedy, NucleusSampling, decode

__all__ = ["METHODS", "STRATEGIES", "BeamSearch", "Caption", "DecodingOptions", "Greedy", "NucleusSampling", "decode"]
