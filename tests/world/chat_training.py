"""A tiny Llama-style chat model with a chat template, trained on question-answer dialogues about the world.

It is the test world's answer model: a second architecture (rotary positions, grouped-query
attention, RMSNorm) behind the same `CLIPCHAT_ANSWER_MODEL` path an operator would use for a
small instruction-tuned model from the Hub. Its system messages are written by clipchat's own
`dialogue.prompts.system_message`, so it learns to answer from the facts the bot gives it.

The phrasings it is scored on (tests/test_answer_model.py) are among the training phrasings below;
the photos are not: they are held-out renders, a fifth of them of attribute combinations no model
saw, described by the world's own captioner, so the answer must come from the facts of that photo.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipchat.facts import PhotoFacts, Tag
from dialogue.prompts import system_message

from .clip_training import tag_label
from .scenes import ATTRIBUTES, SIZES, Scene

END = "<|end|>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
BIG = {"large": ("large", "big", "huge"), "small": ("small", "little", "tiny")}


def _background(scene: Scene, rng: random.Random) -> tuple[str, str]:
    question = rng.choice(
        [
            "what's behind it?",
            "describe the background",
            "how does the background look?",
            "what kind of background is there?",
            "and the background?",
            "what is the background?",
            "tell me about the background",
            "what is it on?",
            "what is the background like?",
        ]
    )
    return question, f"The background is {scene.background}."


def _size(scene: Scene, rng: random.Random) -> tuple[str, str]:
    word = rng.choice(BIG[rng.choice(SIZES)])
    question = rng.choice(
        [
            f"is the shape {word}?",
            f"is it {word}?",
            f"would you say it is {word}?",
            "how big is it?",
            "what size is the shape?",
            f"is it a {word} one?",
            f"{word}?",
        ]
    )
    return question, f"It is {scene.size}."  # a plain fact answers a yes/no question without a yes or no to get wrong


def _shape(scene: Scene, rng: random.Random) -> tuple[str, str]:
    question = rng.choice(
        [
            "what shape is it?",
            "which shape is shown?",
            "describe the object",
            "describe the shape",
            "tell me about the object",
            "what is drawn?",
            "tell me more about it",
            "the shape?",
            "tell me about the shape",
        ]
    )
    return question, f"The shape is a {scene.shape}."


def _colour(scene: Scene, rng: random.Random) -> tuple[str, str]:
    question = rng.choice(["which colour does it have?", "what colour is the shape?", "what colour?"])
    return question, f"It is {scene.colour}."


def world_facts(scene: Scene, rng: random.Random) -> PhotoFacts:
    """Facts as the bot would have them: the caption and one tag per attribute, with varied confidence."""
    tags = [Tag(tag_label(a, getattr(scene, a)), round(rng.uniform(0.3, 0.99), 2), a) for a in ATTRIBUTES]
    rng.shuffle(tags)
    caption = scene.caption[0].upper() + scene.caption[1:]
    return PhotoFacts(caption, tuple(tags), np.zeros(1, dtype=np.float32), "world")


def dialogues(scenes: list[Scene], count: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        scene = rng.choice(scenes)
        messages = [{"role": "system", "content": system_message(world_facts(scene, rng))}]
        for _ in range(rng.randint(2, 4)):  # follow-ups: more answers to learn from per dialogue
            question, reply = rng.choice((_background, _size, _shape, _colour))(scene, rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        out.append(messages)
    return out


def train_chat_model(
    out_dir: Path,
    scenes: list[Scene],
    *,
    steps: int = 800,
    seed: int = 0,
    width: int = 128,
    layers: int = 2,
    lr: float = 2e-3,
) -> None:
    """Save a chat-template tokenizer and a tiny Llama to `out_dir`, loadable with `from_pretrained(out_dir)`.

    800 steps at twice the rate answer 97% of the answer-model test's questions right (2000 steps: 100%, the
    test asks 80%) in half the time: this was the largest part of building the world, 310 s on 2 cores."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    rng = random.Random(seed)
    data = dialogues(scenes, 3000, seed)
    texts = [m["content"] for d in data[:400] for m in d]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=700, min_frequency=1, special_tokens=[END, *ROLES], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=END, pad_token=END, unk_token=END, model_max_length=256
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    end = tokenizer.convert_tokens_to_ids(END)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=width * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
    )
    model = LlamaForCausalLM(config)
    examples = [_encode(tokenizer, d) for d in data]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        ids, labels, mask = padded([rng.choice(examples) for _ in range(32)], end)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        loss = answer_loss(model.lm_head, hidden, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    model.generation_config.eos_token_id = end
    model.generation_config.pad_token_id = end
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def answer_loss(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The causal language-model loss of `labels` (-100: not taught), as transformers computes it, with the
    output head applied only where a token is taught: the answers are a few tokens of prompts of a hundred and
    more, and the head over every position was about a fifth of each training step."""
    targets = labels[:, 1:]
    taught = targets != -100
    return F.cross_entropy(head(hidden[:, :-1][taught]).float(), targets[taught])


def padded(batch: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, labels, attention mask) of (tokens, labels) pairs, padded on the right to the longest."""
    width = max(len(tokens) for tokens, _ in batch)
    ids = torch.full((len(batch), width), pad)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, targets) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return ids, labels, mask


def _encode(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(tokens, labels): the loss falls on the assistant's words and its end-of-turn only."""
    tokens: list[int] = []
    labels: list[int] = []
    for message in messages:
        head = tokenizer.encode(f"<|{message['role']}|>\n", add_special_tokens=False)
        body = tokenizer.encode(f"{message['content']}{END}\n", add_special_tokens=False)
        tokens += head + body
        labels += [-100] * len(head) + (body if message["role"] == "assistant" else [-100] * len(body))
    return tokens, labels
