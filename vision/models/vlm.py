"""Answer models that see the photo: image-text-to-text models, loaded through transformers' public auto classes.

    kind = answer_kind(ref)            # WORDS (a causal LM), SEES (a chat VLM) or TASKS (Florence-2's task prompts)
    model = load_seeing_model(ref, device, dtype)   # an AnswerModel whose `processor` turns photo and text to inputs

An answer-model reference is a vision-language model when its config's class is one
`AutoModelForImageTextToText` maps (SmolVLM's Idefics3, Qwen2.5-VL, Qwen3-VL, LLaVA, Florence-2 ...); nothing here
names an architecture but Florence-2's task-prompted kind, which cannot chat. It is loaded from the hub, a local
directory or the offline cache as a causal LM is (`language_model.load_language_model`), with no remote code.

A chat VLM must bring a chat template (its prompt is built with it, the photo as an `{"type": "image"}` part):
one without is refused at start-up, in one line, as is a reference whose config no auto class knows.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clipchat.errors import InvalidConfig, ModelNotFound

from ..catalog.model_sets import Ref

if TYPE_CHECKING:
    from .answer_model import AnswerModel

log = logging.getLogger(__name__)

# Image-text-to-text models prompted by a task token, not a conversation: Florence-2 reads "<OCR>", writes text.
TASK_PROMPTED = frozenset({"florence2"})
READ_TASK = "<OCR>"
DESCRIBE_TASK = "<MORE_DETAILED_CAPTION>"


class AnswerKind(StrEnum):
    """What an answer model reads: words alone (a causal LM), or the photo too."""

    WORDS = "words"  # a causal language model: the caption and CLIP's tags, as text
    SEES = "sees"  # a chat vision-language model: the photo, the facts and the conversation
    TASKS = "tasks"  # a task-prompted one (Florence-2): reads the text in a photo, describes it; cannot chat

    @property
    def sees_images(self) -> bool:
        return self is not AnswerKind.WORDS

    @property
    def shown(self) -> str:
        """For `doctor` and the logs."""
        return {
            AnswerKind.WORDS: "a language model: reads the caption and tags",
            AnswerKind.SEES: "a vision-language model: sees the photo",
            AnswerKind.TASKS: "a task-prompted vision model: sees the photo, reads its text and describes it; "
            "other open questions go to the captioner's language model",
        }[self]


def _kwargs(cache_dir: Path | None) -> dict[str, Any]:
    return {"cache_dir": str(cache_dir)} if cache_dir else {}


def _not_loaded(ref: Ref, what: str, error: Exception) -> ModelNotFound:
    return ModelNotFound(
        f"Could not load the {what} of answer model {ref}: {str(error).rstrip('.')}. If this machine is "
        "offline, run `clipchat prefetch` where it can reach the Hugging Face Hub."
    )


def sees_config(config: Any) -> bool:
    """Whether transformers' image-text-to-text auto class maps this config's class (its public mapping)."""
    from transformers import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    return type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING


def answer_kind(ref: Ref, cache_dir: Path | None = None, *, check: bool = True) -> AnswerKind:
    """The kind of answer model `ref` is, from its config (a few kB; no weights). With `check`, a chat VLM's
    processor is loaded too and one without a chat template is refused: at start-up, not on the first question."""
    from transformers import AutoConfig

    if ref.scheme == "local-dir" and not Path(ref.target).is_dir():
        raise ModelNotFound(f"Answer model directory {ref.target} does not exist.")
    try:
        config = AutoConfig.from_pretrained(ref.pretrained_id, **_kwargs(cache_dir))
    except OSError as error:
        raise _not_loaded(ref, "config", error) from error
    except ValueError as error:  # a model_type this transformers does not know
        raise InvalidConfig(
            f"Answer model {ref} has an architecture this transformers does not know ({error}); "
            "clipchat loads no remote code: choose a model transformers supports natively."
        ) from error
    if not sees_config(config):
        return AnswerKind.WORDS
    if config.model_type in TASK_PROMPTED:
        if check:
            load_processor(ref, cache_dir)
        return AnswerKind.TASKS
    if check and not getattr(load_processor(ref, cache_dir), "chat_template", None):
        raise InvalidConfig(
            f"Answer model {ref} is a vision-language model ({config.model_type}) without a chat template, so "
            "no conversation can be put to it: choose its instruction-tuned (-Instruct) version."
        )
    return AnswerKind.SEES


def load_processor(ref: Ref, cache_dir: Path | None = None) -> Any:
    """The model's own processor (image processor, tokenizer, chat template), by `AutoProcessor`."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(ref.pretrained_id, **_kwargs(cache_dir))
    except OSError as error:
        raise _not_loaded(ref, "processor", error) from error


def load_seeing_model(
    ref: Ref, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None, kind: AnswerKind | None = None
) -> AnswerModel:
    """An image-text-to-text answer model and its processor, in eval mode on `device`."""
    from transformers import AutoModelForImageTextToText

    from .answer_model import AnswerModel, context_window

    kind = kind or answer_kind(ref, cache_dir)
    if kind is AnswerKind.WORDS:
        raise InvalidConfig(f"Answer model {ref} is a language model, not a vision-language model.")
    processor = load_processor(ref, cache_dir)
    image_processor: Any = getattr(processor, "image_processor", None)
    if getattr(image_processor, "do_image_splitting", False):
        # SmolVLM's and Idefics3's: a photo is upscaled to 2048 px and read as 16 tiles and the whole. The bot's
        # photos reach the model at 512 px (bot.engine.served.IMAGE_SIDE): the tiles hold no more than the whole
        image_processor.do_image_splitting = False
        log.info("answer model %s: photos read whole, not split into tiles", ref)
    try:
        model = AutoModelForImageTextToText.from_pretrained(ref.pretrained_id, dtype=dtype, **_kwargs(cache_dir))
    except OSError as error:
        raise _not_loaded(ref, "weights", error) from error
    model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' wrapped `to`
    answerer = AnswerModel(
        model, processor.tokenizer, context_window(model, processor.tokenizer), str(ref), processor, kind
    )
    log.info("answer model %s loaded: %s, %d-token window", ref, kind.shown, answerer.window)
    return answerer


def photo_inputs(model: AnswerModel, prompt: str, picture: Any | None) -> dict[str, torch.Tensor]:
    """The processor's tensors for one prompt and (when there is one) the photo, on the model's device: token ids,
    and the pixel values and whatever else the architecture's processor makes of the photo."""
    processor = model.processor
    if picture is None:
        inputs = processor(text=[prompt], return_tensors="pt")
    else:
        inputs = processor(text=[prompt], images=[picture], return_tensors="pt")
    device = next(model.lm.parameters()).device
    dtype = next(model.lm.parameters()).dtype
    return {
        name: value.to(device, dtype) if value.is_floating_point() else value.to(device)
        for name, value in inputs.items()
        if isinstance(value, torch.Tensor)
    }


@torch.inference_mode()
def run_task(model: AnswerModel, picture: Any, task: str, max_tokens: int) -> str:
    """A task-prompted model's text for `task` (READ_TASK: the photo's text; DESCRIBE_TASK: a paragraph about it),
    greedy and whole: a transcription is not sampled."""
    inputs = photo_inputs(model, task, picture)
    generated = model.lm.generate(  # type: ignore[operator]  # a transformers model's generate
        **inputs, max_new_tokens=max_tokens, do_sample=False, num_beams=1
    )
    text = model.processor.batch_decode(generated, skip_special_tokens=True)[0]
    return " ".join(str(text).split())


__all__ = [
    "DESCRIBE_TASK",
    "READ_TASK",
    "TASK_PROMPTED",
    "AnswerKind",
    "answer_kind",
    "load_processor",
    "load_seeing_model",
    "photo_inputs",
    "run_task",
    "sees_config",
]
