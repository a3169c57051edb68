"""The default captioner is ClipCap's COCO checkpoint: clipchat must caption exactly as ClipCap does.

The published weights cannot be downloaded here, so this builds a randomly initialised
checkpoint in their exact layout (`clip_project.model.{0,2}` for the MLP, `gpt.*` for the
fine-tuned GPT-2, legacy attention buffers included) and compares clipchat's captions,
token for token, with a reference written from the paper's description: the MLP maps a raw
CLIP vector to 10 prefix embeddings, GPT-2 continues them, and greedy decoding re-runs the
whole sequence each step (no KV cache, one photo at a time) until a full stop, new line or
end of text. Only the sizes are small: the layout, the prefix length and the decoding are
ClipCap's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vision.catalog.model_sets import Ref
from vision.decoding.strategies import DecodingOptions, decode
from vision.models.captioner import load_clipcap_checkpoint
from vision.models.language_model import stop_token_ids

PREFIX_LENGTH = 10  # ClipCap's MLP setting, and its COCO checkpoint's
CLIP_DIM = 512  # OpenAI ViT-B/32, which the published checkpoints were trained on
MAX_TOKENS = 30
WORDS = (
    "a man riding a horse on a beach . two dogs play with a ball in the park . a plate of food on a table . "
    "a red bus parked next to a building . people standing in a kitchen ."
)


class ClipCapMLP(nn.Module):
    """ClipCap's `MLP`: Linear, Tanh, Linear, in a Sequential called `model`."""

    def __init__(self, sizes: tuple[int, int, int]) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.Tanh(), nn.Linear(sizes[1], sizes[2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ClipCaptionModel(nn.Module):
    """ClipCap's model: `gpt` plus `clip_project` from the CLIP width to prefix_length GPT-2 embeddings."""

    def __init__(self, gpt, prefix_length: int, prefix_size: int) -> None:
        super().__init__()
        self.prefix_length = prefix_length
        self.gpt = gpt
        width = gpt.transformer.wte.weight.shape[1]
        self.clip_project = ClipCapMLP((prefix_size, width * prefix_length // 2, width * prefix_length))

    def prefix(self, clip: torch.Tensor) -> torch.Tensor:
        return self.clip_project(clip).view(-1, self.prefix_length, self.gpt.transformer.wte.weight.shape[1])


@torch.inference_mode()
def reference_caption(model: ClipCaptionModel, clip: torch.Tensor, stops: set[int]) -> list[int]:
    """Greedy decoding as the paper describes it, for one (clip_dim,) vector."""
    embeddings = model.prefix(clip[None])  # (1, 10, width)
    tokens: list[int] = []
    for _ in range(MAX_TOKENS):
        logits = model.gpt(inputs_embeds=embeddings).logits[0, -1]  # the whole sequence again, every step
        token = int(logits.argmax())
        tokens.append(token)
        if token in stops:
            break
        embeddings = torch.cat([embeddings, model.gpt.transformer.wte.weight[token][None, None]], dim=1)
    return tokens


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ClipCaptionModel]:
    """(a ClipCap .pt file, the GPT-2 directory it fine-tunes, the reference model holding the same weights)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("clipcap")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [WORDS], vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    # A wide initialisation gives peaked logits, so the argmax never hangs on float rounding between
    # the cached and the uncached computation.
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        initializer_range=0.4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    stock = GPT2LMHeadModel(config).eval()  # what the checkpoint's GPT-2 was fine-tuned from
    stock.save_pretrained(folder / "gpt2")
    tokenizer.save_pretrained(folder / "gpt2")

    torch.manual_seed(1)
    reference = ClipCaptionModel(GPT2LMHeadModel(config), PREFIX_LENGTH, CLIP_DIM).eval()
    for parameter in reference.clip_project.parameters():
        nn.init.normal_(parameter, std=0.3)
    state = dict(reference.state_dict())
    for layer in range(config.n_layer):  # what transformers < 4.31 saved, as in the published files
        state[f"gpt.transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(64, 64, dtype=torch.bool))[None, None]
        state[f"gpt.transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, folder / "coco_weights.pt")
    return folder / "coco_weights.pt", folder / "gpt2", reference


def test_the_clipcap_layout_captions_token_for_token_like_the_papers_decoding(checkpoint) -> None:
    path, gpt2, reference = checkpoint
    captioner = load_clipcap_checkpoint(
        Ref("local-dir", str(path)), Ref("local-dir", str(gpt2)), torch.device("cpu"), torch.float32
    )
    assert captioner.config.prefix_length == PREFIX_LENGTH and captioner.config.clip_dim == CLIP_DIM
    assert not captioner.config.normalize_prefix  # ClipCap fed raw CLIP vectors
    torch.manual_seed(2)
    clip = torch.randn(12, CLIP_DIM) * 0.5  # raw vectors: not unit length, as ClipCap saw them
    ours = decode(captioner, clip, DecodingOptions(method="greedy", max_tokens=MAX_TOKENS))
    stops = set(stop_token_ids(captioner.tokenizer))
    expected = [reference_caption(reference, vector, stops) for vector in clip]
    assert [list(candidates[0].tokens) for candidates in ours] == expected
    assert len({tuple(tokens) for tokens in expected}) > 1  # the photos are told apart, not one fixed string
    assert any(len(tokens) > 1 for tokens in expected)
