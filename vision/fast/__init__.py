"""Speed paths: packed oneDNN linears, the few-row bfloat16 kernel, the lean GPT-2 step and CUDA graphs.

Each plugs into the plain path through one seam and changes no result beyond float rounding; every
private PyTorch or transformers API the project uses lives in this package and nowhere else.
"""
