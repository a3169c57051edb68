"""python -m bench.memory: resident memory of the default model set on this machine, every model loaded.

The default set's weights cannot be downloaded everywhere, so this builds the same
architectures with random weights (OpenAI ViT-B/32 in open_clip, a ClipCap COCO checkpoint
in its published layout with its fine-tuned GPT-2 124M, and a second, stock GPT-2 124M as
the answer model), loads them through `load_models` as the bot does, captions a photo,
answers an open question, and reports the process's resident set size at each step.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def rss_gb() -> float:
    """Resident set size now (Linux), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status: this benchmark reads Linux's process status")


def build_default_architectures(folder: Path) -> Path:
    """A model-set directory with the default set's shapes: ClipCap .pt (prefix 10, MLP 512 -> 3840 -> 7680)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    # A byte-level BPE tokenizer with GPT-2's vocabulary size, held as GPT-2's is (a vocabulary table, not
    # added tokens, which transformers keeps far more expensively); the words do not matter for memory.
    size = GPT2Config().vocab_size
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    vocab.update({f"w{index}": index for index in range(len(vocab), size - 1)})
    vocab["<|endoftext|>"] = size - 1
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    gpt2 = GPT2LMHeadModel(GPT2Config())  # 124M
    gpt2.save_pretrained(folder / "gpt2")
    tokenizer.save_pretrained(folder / "gpt2")
    width, prefix = gpt2.config.n_embd, 10
    state = {f"gpt.{k}": v for k, v in gpt2.state_dict().items()}
    state["clip_project.model.0.weight"] = torch.randn(width * prefix // 2, 512) * 0.02
    state["clip_project.model.0.bias"] = torch.zeros(width * prefix // 2)
    state["clip_project.model.2.weight"] = torch.randn(width * prefix, width * prefix // 2) * 0.02
    state["clip_project.model.2.bias"] = torch.zeros(width * prefix)
    torch.save(state, folder / "coco_weights.pt")
    del gpt2, state
    (folder / "clipchat.json").write_text(
        json.dumps(
            {
                "clip": "ViT-B-32-quickgelu",
                "language_model": "local-dir:gpt2",
                "captioner": "clipcap:coco_weights.pt",
                "answer_model": "local-dir:gpt2",
            }
        )
    )
    return folder


def measure(dtype: str) -> dict[str, float]:
    from bot.engine.budget import return_large_blocks_to_the_os
    from dialogue import Conversation, answer
    from vision import load_models

    return_large_blocks_to_the_os()  # as the bot does before loading its models
    figures = {"python and torch imported": rss_gb()}
    with tempfile.TemporaryDirectory() as scratch:
        # Written by another process, so what building them allocated is not counted here.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            folder = pool.submit(build_default_architectures, Path(scratch)).result()
        models = load_models(
            str(folder), device="cpu", dtype=dtype, cache_dir=Path(scratch) / "cache", allow_random_weights=True
        )
        figures["CLIP and captioner loaded"] = rss_gb()
        photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8))
        [facts] = models.describe([photo])
        figures["after captioning a photo"] = rss_gb()
        answer(models, Conversation(facts), "is there anything else worth saying?")
        assert models.answerer.loaded
        figures["answer model loaded, open question answered"] = rss_gb()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--dtype", default="auto", help="as CLIPCHAT_DTYPE (default auto)")
    args = parser.parse_args()
    from vision.catalog.devices import resolve_dtype

    print(f"dtype {args.dtype} (the models in {resolve_dtype(args.dtype, torch.device('cpu'))})")
    for step, value in measure(args.dtype).items():
        print(f"{value:6.2f} GB  {step}")


if __name__ == "__main__":
    main()
