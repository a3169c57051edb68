"""The world's vision-language model: SmolVLM's architecture (Idefics3) at tiny size, trained to see the world.

It is saved as the hub has SmolVLM (config, weights, processor with its chat template), so the bot loads it
through the same `local-dir:`/hub code as HuggingFaceTB/SmolVLM-256M-Instruct, and answers with the prompt the
bot builds (`dialogue.seeing`: the seeing instruction, the facts, earlier turns, the photo with the question).

Training has two stages, as VLMs are made from a pretrained vision encoder:
1. the vision tower (a SigLIP-like ViT, 8-px patches) learns what each of its tokens' patch shows: background,
   shape or label; the shape's colour, size and where it stands; the label's word and the letter under it
   (`token_targets`, one linear head per fact, dropped after). Taught with one label per photo, read from the
   mean of the tokens, the tower learnt colour and background but left the word unread and the position
   half-learnt in the steps a world build allows; taught patch by patch, it learns them in a few hundred;
2. with the tower frozen (its tokens computed once per photo), the connector and a tiny Llama learn dialogues
   in the bot's own prompt format: position, text, colour, size, shape and background, a description, and the
   `/read` instruction. The connector starts from the tower's read-outs times the embeddings of the words they
   stand for (`TiedReadout`, folded into the plain connector at the end), so image tokens begin by saying their
   facts in the language model's own words: position went from 0.73 to 1.0 on held-out photos in fewer steps.
   The caption in the facts is wrong on some photos, as a captioner's can be, and the answer stays what the
   photo shows, so the model learns to look rather than to repeat the caption. Shape is not taught to the tower:
   this small a ViT stays near chance on it (the world's CLIP, a ResNet, is better), so the model takes the shape
   from the caption.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from clipchat.facts import PhotoFacts
from dialogue.conversation import Conversation
from dialogue.seeing import SEEING_INSTRUCTION, TRANSCRIBE, seen_messages

from .chat_training import answer_loss, padded, world_facts
from .clip_training import VALUES
from .placed import POSITIONS, WORDS, Layout, Placed, render_with_layout, training_photos
from .scenes import ATTRIBUTES, Scene, describe

SIZE = 96
PATCH = 8
VISION = {"hidden_size": 64, "intermediate_size": 170, "num_hidden_layers": 3, "num_attention_heads": 4}
TEXT = {
    "hidden_size": 128,
    "intermediate_size": 320,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}
_SPOKEN = {"left": "on the left", "centre": "in the centre", "right": "on the right"}


def _position(placed: Placed, rng: random.Random) -> tuple[str, str]:
    shape = rng.choice(["it", "the shape", f"the {placed.scene.shape}"])
    question = rng.choice(
        [
            f"where is {shape}?",
            f"where in the photo is {shape}?",
            f"which side is {shape} on?",
            f"is {shape} on the left or the right?",
            f"is {shape} in the middle?",
            f"is {shape} on the {rng.choice(['left', 'right'])}?",
            "where is it placed?",
            f"what part of the photo is {shape} in?",
        ]
    )
    return question, f"It is {_SPOKEN[placed.position]}."


def _text(placed: Placed, rng: random.Random) -> tuple[str, str]:
    question = rng.choice(
        [
            "is anything written on it?",
            "what is written on the label?",
            "what word is on the label?",
            "does the photo have any text?",
            "which word is shown?",
            "what does the label say?",
        ]
    )
    return question, f"The label says {placed.text}." if placed.text else "There is no text."


def _attribute(attribute: str):
    asked = {
        "colour": ["what colour is it?", "which colour does it have?", "what colour is the shape?"],
        "shape": ["what shape is it?", "which shape is shown?", "what is drawn?"],
        "size": ["how big is it?", "is it large or small?", "what size is the shape?"],
        "background": ["what is the background?", "describe the background", "what is it on?"],
    }[attribute]
    said = {
        "colour": "It is {}.",
        "shape": "The shape is a {}.",
        "size": "It is {}.",
        "background": "The background is {}.",
    }[attribute]

    def qa(placed: Placed, rng: random.Random) -> tuple[str, str]:
        return rng.choice(asked), said.format(getattr(placed.scene, attribute))

    return qa


def _describe(placed: Placed, rng: random.Random) -> tuple[str, str]:
    scene = placed.scene
    question = rng.choice(["describe it in detail", "what else can you see?", "tell me everything you see"])
    said = (
        f"{describe(size=scene.size, colour=scene.colour, shape=scene.shape).capitalize()} {_SPOKEN[placed.position]}"
    )
    said += f", on a {scene.background} background."
    if placed.text:
        said += f" The label says {placed.text}."
    return question, said


# What only the photo answers comes up most: where the shape is, and what its label says
ASKERS = (_position, _position, _position, _text, _text, _describe, *(_attribute(a) for a in ATTRIBUTES))


def _misled(scene: Scene, rng: random.Random) -> Scene:
    """The scene with one attribute changed: the caption a captioner might have got wrong."""
    attribute = rng.choice(ATTRIBUTES)
    other = rng.choice([v for v in VALUES[attribute] if v != getattr(scene, attribute)])
    return Scene(**{**scene.attributes(), attribute: other})


def conversation_about(placed: Placed, rng: random.Random) -> tuple[list[dict], str]:
    """(messages as `dialogue.seeing` builds them, the answer): one question with the photo, maybe after one
    earlier exchange, or the `/read` instruction alone."""
    told = _misled(placed.scene, rng) if rng.random() < 0.15 else placed.scene
    facts: PhotoFacts = world_facts(told, rng)
    if rng.random() < 0.12:
        messages = seen_messages(Conversation(facts), TRANSCRIBE, True, instruction=TRANSCRIBE)
        return messages, placed.text or "none"
    turns: tuple = ()
    if rng.random() < 0.3:
        earlier, reply = rng.choice(ASKERS)(placed, rng)
        turns = (("user", earlier), ("assistant", reply))
    question, reply = rng.choice(ASKERS)(placed, rng)
    return seen_messages(Conversation(facts, turns), question, True), reply


def _corpus(scenes: list[Scene]) -> list[str]:
    rng = random.Random(1)
    texts = [SEEING_INSTRUCTION, TRANSCRIBE, *WORDS]
    for placed in training_photos(scenes, 600, seed=5):
        messages, reply = conversation_about(placed, rng)
        texts += [part["text"] for m in messages for part in m["content"] if part["type"] == "text"] + [reply]
    return texts


LETTERS = tuple(sorted(set("".join(WORDS))))
# What each of the tower's tokens is taught to say about its own patch of the photo (stage 1)
TOKEN_FACTS = {
    "kind": 3,  # background, shape, label
    "colour": len(VALUES["colour"]),
    "size": len(VALUES["size"]),
    "position": len(POSITIONS),
    "background": len(VALUES["background"]),
    "word": len(WORDS),
    "letter": len(LETTERS),
}
# The words a fact's classes are said with: the connector starts as the sum of these words' embeddings, weighted
# by the tower's read-outs (`TiedReadout`), so an image token on a red shape begins by saying " red"
SAID = {
    "colour": VALUES["colour"],
    "size": VALUES["size"],
    "position": POSITIONS,
    "background": VALUES["background"],
    "word": WORDS,
}


def token_targets(photos: list[Placed], layouts: list[Layout], patch: int) -> dict[str, torch.Tensor]:
    """(photos, patches) class indices per fact, -100 where a fact does not apply to that patch: a patch on the
    shape says its colour, shape and size; one on the label, the word and the letter under its centre; the rest,
    the background. Every patch but the label's says where the shape stands: taught on the shape's patches only,
    the read-outs of the others were untrained noise in the connector's position words, and held-out position
    answers fell to 0.58-0.83 on a Zen 3 (0.97-1.0 after, seeds 0 and 1); taught on the label's patches too, the
    word was read half as often. Taught patch by patch, facts of one region are learnt in a few hundred steps,
    where one label per photo left the word unread and the position half-learnt."""
    grid = SIZE // patch
    centres = (torch.arange(grid) + 0.5) * patch
    ys, xs = (c.flatten() for c in torch.meshgrid(centres, centres, indexing="ij"))
    out = {fact: torch.full((len(photos), grid * grid), -100, dtype=torch.long) for fact in TOKEN_FACTS}
    out["kind"].fill_(0)
    for n, (photo, layout) in enumerate(zip(photos, layouts)):
        (cx, cy), scene = layout.centre, photo.scene
        on_shape = ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() < max(layout.radius * 0.85, patch * 0.6)
        on_label = torch.zeros_like(on_shape)
        if layout.label and photo.text:
            left, top, right, bottom = layout.label
            on_label = (xs > left) & (xs < right) & (ys > top) & (ys < bottom)
            out["word"][n, on_label] = WORDS.index(photo.text)
            for letter, start, end in layout.letters:
                out["letter"][n, on_label & (xs >= start) & (xs < end)] = LETTERS.index(letter)
        out["kind"][n, on_shape] = 1
        out["kind"][n, on_label] = 2
        for fact in ("colour", "size"):
            out[fact][n, on_shape] = VALUES[fact].index(getattr(scene, fact))
        out["position"][n, ~on_label] = POSITIONS.index(photo.position)
        out["background"][n, ~on_shape & ~on_label] = VALUES["background"].index(scene.background)
    return out


def _pixels(processor, images) -> torch.Tensor:
    return processor.image_processor([[image] for image in images], return_tensors="pt")["pixel_values"][:, 0]


def train_tower(
    model, pixels: torch.Tensor, targets: dict[str, torch.Tensor], steps: int, rng: random.Random
) -> torch.nn.ModuleDict:
    """Stage 1: the tower and one linear head per token fact (the heads are dropped after)."""
    tower = model.model.vision_model
    heads = torch.nn.ModuleDict(
        {f: torch.nn.Linear(tower.config.hidden_size, n, bias=False) for f, n in TOKEN_FACTS.items()}
    )
    optimizer = torch.optim.AdamW([*tower.parameters(), *heads.parameters()], lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    tower.train()
    for _ in range(steps):
        batch = torch.tensor(rng.sample(range(len(pixels)), 48))
        tokens = tower(pixel_values=pixels[batch].float()).last_hidden_state
        loss = sum(
            F.cross_entropy(head(tokens).flatten(0, 1), targets[f][batch].flatten(), ignore_index=-100)
            for f, head in heads.items()
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    tower.eval()
    return heads


class TiedReadout(torch.nn.Module):
    """Training-time only: each tower token's read-out logits times the embeddings of the words they stand for
    (" red", " left", " MOON" ...), summed over the pixel-shuffled group as the connector groups tokens. Linear
    in the token, so `fold` adds it into the connector's own weight at the end and the saved model is plain
    Idefics3. The language model then starts with image tokens that already say their facts in its own words,
    and learns to copy them as it copies the caption, instead of first learning what 256 numbers mean."""

    def __init__(self, heads: torch.nn.ModuleDict, ids: dict[str, list[int]], embed: torch.nn.Embedding, scale: int):
        super().__init__()
        self.heads, self.ids, self.embed, self.scale = heads, ids, embed, scale

    def words(self) -> torch.Tensor:
        """(width, tower width): the linear map from one tower token to the words it says."""
        return sum(self.embed.weight[self.ids[f]].T @ self.heads[f].weight for f in self.ids) / len(self.ids)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        said = tokens @ self.words().T  # (B, T, width)
        b, t, width = said.shape
        side = int(t**0.5)
        grouped = said.view(b, side // self.scale, self.scale, side // self.scale, self.scale, width)
        return grouped.sum(dim=(2, 4)).view(b, t // self.scale**2, width)

    @torch.no_grad()
    def fold(self, connector) -> None:
        weight = connector.modality_projection.proj.weight  # (width, tower width * scale ** 2)
        words = self.words()
        for block in range(self.scale**2):
            weight[:, block * words.shape[1] : (block + 1) * words.shape[1]] += words


@torch.no_grad()
def tower_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    tower = model.model.vision_model
    return torch.cat([tower(pixel_values=chunk.float()).last_hidden_state for chunk in pixels.split(256)])


def _encoded(processor, messages: list[dict], reply: str, expanded: str) -> tuple[list[int], list[int]]:
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.encode(prompt.replace("<image>", expanded), add_special_tokens=False)
    answer = [*tokenizer.encode(" " + reply, add_special_tokens=False), tokenizer.eos_token_id]
    return ids + answer, [-100] * len(ids) + answer


def train_dialogues(
    model,
    processor,
    tokens: torch.Tensor,
    photos: list[Placed],
    heads: torch.nn.ModuleDict,
    steps: int,
    seed: int,
    log=print,
) -> None:
    """Stage 2: the connector (with the tower's read-outs tied in) and the language model, the tower frozen."""
    rng = random.Random(seed)
    image_id = model.config.image_token_id
    expanded = processor.tokenizer.decode(
        processor(text=["<image>"], images=[Image.new("RGB", (SIZE, SIZE))])["input_ids"][0]
    )
    examples = []
    for index in range(len(photos) * 3):
        photo = index % len(photos)
        examples.append((photo, *_encoded(processor, *conversation_about(photos[photo], rng), expanded)))
    tower = model.model.vision_model
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
    embed = model.get_input_embeddings()
    said = {
        fact: [processor.tokenizer.encode(" " + value, add_special_tokens=False)[0] for value in values]
        for fact, values in SAID.items()
    }
    tied = TiedReadout(heads, said, embed, model.config.scale_factor)
    trained = [p for p in model.parameters() if p.requires_grad] + [*heads.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    pad = processor.tokenizer.pad_token_id
    model.train()
    for step in range(steps):
        batch = [rng.choice(examples) for _ in range(24)]
        ids, labels, mask = padded([(tokens_, targets) for _, tokens_, targets in batch], pad)
        shown = tokens[[photo for photo, _, _ in batch]].float()
        seen = model.model.connector(shown) + tied(shown)  # (B, image_seq_len, width)
        inputs = embed(ids)
        inputs = inputs.masked_scatter((ids == image_id)[..., None], seen.reshape(-1, seen.shape[-1]).to(inputs.dtype))
        hidden = model.model(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        loss = answer_loss(model.lm_head, hidden, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            log(f"world VLM: dialogue step {step}, loss {loss.item():.3f}")
    for parameter in tower.parameters():
        parameter.requires_grad_(True)
    model.eval()
    with torch.no_grad():
        sample = tokens[:4].float()
        expected = model.model.connector(sample) + tied(sample)
        tied.fold(model.model.connector)
        assert torch.allclose(model.model.connector(sample), expected, atol=1e-4)


def train_vlm(
    out_dir: Path,
    scenes: list[Scene],
    *,
    photos: int = 4000,
    tower_steps: int = 900,
    steps: int = 1000,
    seed: int = 0,
    log=print,
) -> None:
    """Build, train and save the world's VLM to `out_dir` (`from_pretrained(out_dir)` loads model and processor)."""
    from tests.tiny_vlms import smolvlm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, processor = smolvlm(
        seed,
        size=SIZE,
        patch=PATCH,
        vision=VISION,
        text=TEXT,
        corpus=_corpus(scenes),
        vocab_size=900,
        upscale=False,
    )
    processor.image_processor.do_image_splitting = False  # as the bot runs it: the photo whole
    shown = training_photos(scenes, photos, seed=seed + 11)
    rendered = [render_with_layout(p, rng) for p in shown]
    pixels = _pixels(processor, [image for image, _ in rendered]).half()
    started = time.monotonic()
    heads = train_tower(
        model, pixels, token_targets(shown, [layout for _, layout in rendered], PATCH), tower_steps, rng
    )
    log(f"world VLM: tower trained ({time.monotonic() - started:.0f}s)")
    train_dialogues(model, processor, tower_tokens(model, pixels), shown, heads, steps, seed, log)
    log(f"world VLM: dialogues trained ({time.monotonic() - started:.0f}s)")
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
