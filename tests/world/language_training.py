"""A GPT-2-architecture model with a byte-level BPE tokenizer, both trained on the world's captions."""

from __future__ import annotations

import random
from pathlib import Path

import torch

EOT = "<|endoftext|>"


def train_language_model(out_dir: Path, texts: list[str], *, steps: int = 300, seed: int = 0) -> None:
    """Save a tokenizer and a tiny GPT-2 to `out_dir`, loadable with `from_pretrained(out_dir)`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    rng = random.Random(seed)
    bpe = ByteLevelBPETokenizer()
    # 256 byte tokens plus enough merges that every caption word is one token, as in GPT-2's own vocabulary.
    bpe.train_from_iterator(texts, vocab_size=512, min_frequency=1, special_tokens=[EOT], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOT, eos_token=EOT, unk_token=EOT, model_max_length=64
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=96,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    eot = tokenizer.eos_token_id
    sequences = [[eot, *tokenizer.encode(t), eot] for t in texts]
    width = max(len(s) for s in sequences)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = [rng.choice(sequences) for _ in range(64)]
        ids = torch.full((len(batch), width), eot)
        labels = torch.full((len(batch), width), -100)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = torch.tensor(seq)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
