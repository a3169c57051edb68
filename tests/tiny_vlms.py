"""Vision-language models of the real architectures at tiny size, random weights, saved as the hub has them.

    folder = tiny_smolvlm(tmp_path)    # Idefics3ForConditionalGeneration + Idefics3Processor, a chat template
    folder = tiny_qwen2_5_vl(tmp_path) # Qwen2_5_VLForConditionalGeneration + Qwen2_5_VLProcessor
    folder = tiny_florence2(tmp_path)  # Florence2ForConditionalGeneration + Florence2Processor (task prompts)

Each is a directory `from_pretrained` reads, so the production loader loads it through a `local-dir:` reference
exactly as it loads SmolVLM, Qwen2.5-VL or Florence-2 from the hub. The tokenizers are byte-level BPE trained here
on a few sentences, with the special tokens each processor looks for; the chat templates have the shape of the
published ones (SmolVLM's "User:<image>...<end_of_utterance>", Qwen's ChatML with vision tokens).
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "it is red. it is orange. it is yellow. it is green. it is blue. it is purple. it is white. it is black.",
    "a large yellow star on a grey background.",
    "a small red circle on a white background.",
    "the shape is a star. it is large. the text says hello.",
    "what shape is it? what colour is it? what does it say?",
    "describe the photo. read the text. which one is red?",
] * 20

SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(special: list[str], vocab_size: int = 400, corpus: list[str] = CORPUS, **named: str):
    """A byte-level BPE fast tokenizer trained on `corpus`, with `special` tokens added as special ones."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **named)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special if t not in named.values()]})
    return tokenizer


TINY_SIGLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY_LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


def tiny_smolvlm(folder: Path, seed: int = 0, **shape) -> Path:
    """Idefics3 (SmolVLM-256M/500M-Instruct's architecture), random weights, saved: see `smolvlm`."""
    return _save(folder, *smolvlm(seed, **shape))


def smolvlm(
    seed: int = 0,
    *,
    size: int = 32,
    patch: int = 8,
    scale_factor: int = 2,
    vision: dict | None = None,
    text: dict | None = None,
    corpus: list[str] = CORPUS,
    vocab_size: int = 400,
    upscale: bool = True,
):
    """(model, processor) of Idefics3 (SmolVLM's architecture): a SigLIP tower, pixel shuffle, a Llama. Tiny by
    default; `bench.vlm_path` gives it SmolVLM's published shapes (`size`, `patch`, `vision`, `text`), the world
    (`tests.world.vlm_training`) its own tokenizer corpus and a processor that does not upscale its small photos."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>"]
    tokenizer = tiny_tokenizer(
        [*special, "<global-img>", *rows],
        vocab_size,
        corpus,
        eos_token="<end_of_utterance>",
        bos_token="<|im_start|>",
    )
    tokenizer.pad_token = "<|endoftext|>"
    # `size`: the vision tower's input; the image is split into tiles of this side (SmolVLM's processor first
    # resizes to twice it: `upscale`)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": (2 if upscale else 1) * size},
        max_image_size={"longest_edge": size},
        do_image_splitting=True,
    )
    image_seq_len = (size // patch) ** 2 // scale_factor**2  # tiny: (32 / 8) ** 2 patches / 2 ** 2 = 4
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=image_seq_len, chat_template=SMOLVLM_TEMPLATE
    )
    torch.manual_seed(seed)
    config = Idefics3Config(
        vision_config={**(vision or TINY_SIGLIP), "image_size": size, "patch_size": patch},
        text_config={
            "vocab_size": len(tokenizer),
            **(text or TINY_LLAMA),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        },
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def tiny_qwen2_5_vl(folder: Path, seed: int = 0) -> Path:
    """Qwen2.5-VL (Qwen/Qwen2.5-VL-3B-Instruct's architecture): a windowed ViT, a merger, a Qwen2 with M-RoPE."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    tokenizer = tiny_tokenizer([*special, "<|image_pad|>", "<|video_pad|>"], eos_token="<|im_end|>")
    tokenizer.pad_token = "<|endoftext|>"
    image_processor = Qwen2VLImageProcessor(
        min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    processor = Qwen2_5_VLProcessor(image_processor, tokenizer, video_processor, chat_template=QWEN_TEMPLATE)
    torch.manual_seed(seed)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [0],
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 2, 4]},
            "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        bos_token_id=tokenizer.pad_token_id,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return _save(folder, model, processor)


def tiny_florence2(folder: Path, seed: int = 0) -> Path:
    """Florence-2 (florence-community/Florence-2-base's architecture): a DaViT tower and a BART encoder-decoder,
    prompted by task tokens such as <OCR>."""
    from transformers import (
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    locations = [f"<loc_{i}>" for i in range(1000)]
    special = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
    tokenizer = tiny_tokenizer(
        [*special, *locations],
        vocab_size=1400,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    side = 32
    image_processor = CLIPImageProcessor(
        size={"height": side, "width": side},
        crop_size={"height": side, "width": side},
        do_center_crop=False,
        image_seq_length=17,  # (32 / 8) ** 2 patches and one pooled token
    )
    processor = Florence2Processor(image_processor, tokenizer)
    torch.manual_seed(seed)
    config = Florence2Config(
        vision_config={
            "in_channels": 3,
            "depths": [1, 1],
            "patch_size": [7, 3],
            "patch_stride": [4, 2],
            "patch_padding": [3, 1],
            "patch_prenorm": [False, True],
            "embed_dim": [16, 32],
            "num_heads": [1, 2],
            "num_groups": [1, 2],
            "window_size": 2,
            "projection_dim": 32,
            "max_temporal_embeddings": 1,
            "max_position_embeddings": 8,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "d_model": 32,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "max_position_embeddings": 128,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "decoder_start_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Florence2ForConditionalGeneration(config).eval()
    return _save(folder, model, processor)


def _save(folder: Path, model, processor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def train_to_say(folder: Path, sentence: str, picture, facts, steps: int = 40) -> Path:
    """Train the chat VLM saved in `folder` to answer `sentence` to any question about `picture`, whatever the
    facts and turns, and save it back: a model whose answer a test knows, written by the production path."""
    from dialogue.conversation import Conversation
    from dialogue.seeing import seen_inputs
    from vision.catalog.model_sets import Ref
    from vision.models.answer_model import load_answer_model

    model = load_answer_model(Ref("local-dir", str(folder)), torch.device("cpu"), torch.float32)
    target = [*model.tokenizer.encode(" " + sentence, add_special_tokens=False), model.tokenizer.eos_token_id]
    said = (("user", "hello"), ("assistant", "Nice photo."))
    prompts = [
        seen_inputs(model, Conversation(facts, turns), question, picture, 480)
        for question in ("what is the background like?", "what is it?", "tell me more", "and the colour?")
        for turns in ((), said)
    ]
    lm = model.lm.train()
    optimiser = torch.optim.Adam(lm.parameters(), lr=1e-2)
    for step in range(steps):
        inputs = dict(prompts[step % len(prompts)])
        ids = torch.cat([inputs["input_ids"], torch.tensor([target])], dim=1)
        labels = torch.cat([torch.full_like(inputs["input_ids"], -100), torch.tensor([target])], dim=1)
        inputs |= {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
        loss = lm(**inputs).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    lm.eval().save_pretrained(folder)
    return folder
