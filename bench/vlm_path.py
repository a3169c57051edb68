"""What an open question costs a vision-language answer model of SmolVLM's real size on this CPU.

    python -m bench.vlm_path [--size 256m|500m] [--repeats 5] [--tokens 30] [--dtypes float32,bfloat16]

SmolVLM-256M/500M-Instruct cannot be downloaded here, so this builds their architecture (Idefics3: a SigLIP
base-patch16-512 tower, pixel shuffle by 4 to 64 image tokens, SmolLM2-135M or -360M) with random weights and
their published shapes, saves it as the hub has it, and loads it through the bot's own loader
(`vision.models.vlm.load_seeing_model`). The prompt is the bot's (`dialogue.seeing.seen_inputs`: facts, a
question, a 512x384 photo as `core/pixels` sends one); generation is the bot's sampling (`SEEN_CANDIDATES`
candidates, top-p; `--candidates`), forced to `--tokens` tokens, since random weights would stop anywhere. Reported: the
processor's time, the first token's time (the photo's and the prompt's pass) and the whole answer's, medians
over `--repeats` after one warm-up, and the process's resident memory once loaded. Random weights cost what
trained ones do: the same shapes and the same number of operations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.drafts import TokenTimes
from bench.memory import rss_gb
from clipchat.facts import PhotoFacts, Tag
from dialogue.conversation import Conversation
from dialogue.seeing import SEEN_CANDIDATES, seen_inputs
from vision.catalog.devices import cpu_model, isa_flags
from vision.catalog.model_sets import Ref
from vision.models.vlm import load_seeing_model

# SmolLM2's published shapes (hidden, layers, heads, key-value heads, MLP); both use SigLIP base-patch16-512.
TEXT = {"256m": (576, 30, 9, 3, 1536), "500m": (960, 32, 15, 5, 2560)}
VOCABULARY = 49_280  # SmolVLM's tokenizer, with its image and row/column tokens


def build(folder: Path, size: str) -> Path:
    """SmolVLM-`size`'s architecture at full size (the tests' tiny SmolVLM with the published shapes; the
    processor reads a 512-px photo as 64 image tokens), random weights, saved for `from_pretrained`."""
    from tests.tiny_vlms import tiny_smolvlm

    hidden, layers, heads, kv_heads, mlp = TEXT[size]
    siglip = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
    llama = {
        "vocab_size": VOCABULARY,
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 8192,
        "rope_theta": 100_000,
        "tie_word_embeddings": True,
    }
    return tiny_smolvlm(folder, size=512, patch=16, scale_factor=4, vision=siglip, text=llama)


def photo() -> Image.Image:
    """A 512x384 photo-like picture, as the bot sends a downscaled one."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def facts() -> PhotoFacts:
    tags = (Tag("a star", 0.61, "shape"), Tag("yellow", 0.72, "colour"), Tag("a gray background", 0.55, "background"))
    return PhotoFacts("A large yellow star on a gray background.", tags, np.zeros(4, dtype=np.float32), "bench")


@torch.inference_mode()
def time_answers(model, tokens: int, repeats: int, candidates: int) -> dict[str, list[float]]:
    conversation = Conversation(facts())
    picture = photo()
    times: dict[str, list[float]] = {"processor": [], "first": [], "whole": []}
    for repeat in range(repeats + 1):  # the first warms up
        started = time.perf_counter()
        inputs = seen_inputs(model, conversation, "where is it in the picture?", picture, model.window - tokens)
        prepared = time.perf_counter()
        clock = TokenTimes()
        model.lm.generate(
            **{"attention_mask": torch.ones_like(inputs["input_ids"]), **inputs},
            do_sample=True,
            top_p=0.9,
            temperature=0.8,
            num_return_sequences=candidates,
            min_new_tokens=tokens,
            max_new_tokens=tokens,
            pad_token_id=model.pad_id,
            streamer=clock,
        )
        if repeat:
            times["processor"].append(prepared - started)
            times["first"].append(clock.times[0] - started)
            times["whole"].append(clock.times[-1] - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vlm_path")
    parser.add_argument("--size", choices=sorted(TEXT), default="256m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=SEEN_CANDIDATES, help="answers sampled (the bot's)")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16")
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"SmolVLM-{args.size} architecture, random weights; {cpu_model()} ({' '.join(isa_flags()) or 'no listed ISA'}),"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load}")
    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder), args.size)
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name.strip())
            before = rss_gb()
            model = load_seeing_model(Ref("local-dir", folder), torch.device("cpu"), dtype)
            times = time_answers(model, args.tokens, args.repeats, args.candidates)
            held = rss_gb() - before  # after answering: the weights are mapped from disk until first read
            med = {key: 1000 * statistics.median(values) for key, values in times.items()}
            spread = {key: f"{1000 * min(v):.0f}-{1000 * max(v):.0f}" for key, v in times.items()}
            print(
                f"{name}: processor {med['processor']:.0f} ms [{spread['processor']}], first token "
                f"{med['first']:.0f} ms [{spread['first']}], {args.tokens}-token answer x{args.candidates} "
                f"{med['whole']:.0f} ms [{spread['whole']}] (median [range] of {args.repeats}); "
                f"resident {held:.2f} GiB more once loaded and used"
            )
            del model


if __name__ == "__main__":
    main()
