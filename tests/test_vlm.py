"""Vision-language answer models: the real architectures at tiny size, random weights, loaded by the production
loader from a `local-dir:` reference as SmolVLM, Qwen2.5-VL or Florence-2 load from the hub, and asked about a
world photo through the production answer path. Their text is random: what is asserted is what a user would
notice of the plumbing (an answer came, it saw the photo, it stopped in time, CLIP's routes still answer first).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from clipchat.errors import InvalidConfig
from dialogue import Answer, Conversation, answer, route
from dialogue.conversation import AnswerOptions
from dialogue.seeing import NO_TEXT, READS_AS
from tests.tiny_vlms import tiny_florence2, tiny_qwen2_5_vl, tiny_smolvlm
from vision import load_models
from vision.models.vlm import AnswerKind

OPEN = "what is the background like?"  # routed to the answer model, not to CLIP
CHAT_VLMS = {
    "smolvlm": (tiny_smolvlm, "Idefics3ForConditionalGeneration"),
    "qwen2.5-vl": (tiny_qwen2_5_vl, "Qwen2_5_VLForConditionalGeneration"),
}
VISION_TOWERS = ("vision_model", "visual", "vision_tower")  # Idefics3's, Qwen2.5-VL's, Florence-2's names


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vlms")
    built = {name: make(folder / name) for name, (make, _) in CHAT_VLMS.items()}
    return built | {"florence-2": tiny_florence2(folder / "florence-2")}


def with_answer_model(world_dir: Path, cache_dir: Path, folder: Path):
    from vision import load_model_set

    model_set = load_model_set(str(world_dir)).with_overrides(answer_model=f"local-dir:{folder}")
    return load_models(model_set, device="cpu", cache_dir=cache_dir)


class Forwards:
    """A VLM's passes: its vision tower's input at each look (the pixel values), and how many passes its whole
    model made (the prompt's, then one a token)."""

    def __init__(self, lm: torch.nn.Module) -> None:
        self.pixels: list[torch.Tensor] = []
        self.passes = 0
        [tower] = [module for name, module in lm.model.named_children() if name in VISION_TOWERS]
        tower.register_forward_pre_hook(self._looked, with_kwargs=True)
        lm.register_forward_pre_hook(self._passed, with_kwargs=True)

    def _looked(self, _module, args, kwargs) -> None:
        self.pixels.append(kwargs.get("pixel_values", args[0] if args else None))

    def _passed(self, _module, args, kwargs) -> None:
        self.passes += 1

    def clear(self) -> None:
        self.pixels.clear()
        self.passes = 0


class Written:
    """`dialogue.Drafts` that keeps what it was shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.asked = 0

    def show(self, text: str) -> None:
        self.shown.append(text)

    def wanted(self) -> bool:
        self.asked += 1
        return True


@pytest.mark.parametrize("name", CHAT_VLMS)
def test_a_chat_vlm_loads_by_the_production_loader_and_answers_seeing_the_photo(
    name, vlm_dirs, world_dir, cache_dir, heldout
) -> None:
    models = with_answer_model(world_dir, cache_dir, vlm_dirs[name])
    assert models.answerer.sees_images and not models.answerer.loaded  # known from its config, loaded when asked
    held = heldout[0]
    facts = models.describe([held.image])[0]
    assert answer(models, Conversation(facts), "what colour is it?").route == "colour"  # CLIP's routes come first
    assert not models.answerer.loaded
    model = models.answerer.get()
    assert type(model.lm).__name__ == CHAT_VLMS[name][1] and model.chat and model.kind is AnswerKind.SEES
    forwards, drafts = Forwards(model.lm), Written()
    torch.manual_seed(0)
    reply = answer(models, Conversation(facts), OPEN, AnswerOptions(max_tokens=6), drafts, picture=held.image)
    assert reply.route == "open" and isinstance(reply.text, str) and reply.text and reply.details["saw"]
    [pixels] = forwards.pixels  # its vision tower looked once, at the processor's pixels of the photo
    assert pixels is not None and pixels.numel() > 0
    if name == "smolvlm":  # a 512-px photo read whole: as 4 tiles of its upscaled copy, it cost 5 looks
        assert pixels.shape[0] == 1
    assert 1 <= forwards.passes <= 6  # the prompt, then a token a step: stopped within max_tokens
    assert drafts.asked >= 1  # streamed: the drafts were consulted as it wrote

    forwards.clear()  # the photo could not be had: the same model answers from the words
    reply = answer(models, Conversation(facts), OPEN, AnswerOptions(max_tokens=6), picture=None)
    assert reply.route == "open" and not reply.details["saw"]
    assert forwards.passes >= 1 and not forwards.pixels


def test_florence2_reads_the_photos_text_and_leaves_conversation_to_the_language_model(
    vlm_dirs, world_dir, cache_dir, heldout
) -> None:
    models = with_answer_model(world_dir, cache_dir, vlm_dirs["florence-2"])
    assert models.answerer.kind is AnswerKind.TASKS and models.answerer.sees_images
    held = heldout[0]
    facts = models.describe([held.image])[0]
    model = models.answerer.get()
    assert type(model.lm).__name__ == "Florence2ForConditionalGeneration"
    looked = Forwards(model.lm)
    read = answer(models, Conversation(facts), "what does it say?", picture=held.image)
    assert isinstance(read.details["read"], str) and read.said is not None
    assert read.text.startswith(READS_AS.split("{")[0]) or read.text == NO_TEXT
    assert len(looked.pixels) == 1 and looked.pixels[0] is not None  # its vision tower saw the photo, once

    for asked in ("read the text please", "what is written on it?"):
        assert "read" in answer(models, Conversation(facts), asked, picture=held.image).details
    assert len(looked.pixels) == 3

    for asked in (OPEN, "can you say what the background is like?"):  # no task answers these: the words do
        talk = answer(models, Conversation(facts), asked, picture=held.image)
        assert talk.route == "open" and ("candidates" in talk.details or "refused" in talk.details)
    assert len(looked.pixels) == 3


def test_a_vlm_without_a_chat_template_is_refused_at_start_up_in_one_line(
    vlm_dirs, world_dir, cache_dir, tmp_path
) -> None:
    base = shutil.copytree(vlm_dirs["smolvlm"], tmp_path / "base")
    (base / "chat_template.jinja").unlink()  # a base (not -Instruct) model: nothing to hold a conversation with
    with pytest.raises(InvalidConfig, match="without a chat template") as refused:
        with_answer_model(world_dir, cache_dir, base)
    assert "\n" not in refused.value.detail


def test_doctor_says_which_answer_models_see_the_photo_and_that_they_load(vlm_dirs, world_dir) -> None:
    from bot.ops.doctor import FAIL, OK, check_answer_model
    from vision.catalog.settings import VisionSettings

    def checked(answer_model: str):
        return check_answer_model(VisionSettings(models=str(world_dir), answer_model=answer_model))

    for name in ("smolvlm", "qwen2.5-vl"):
        found = checked(f"local-dir:{vlm_dirs[name]}")
        assert found.status == OK and "vision-language model: sees the photo" in found.detail
        assert "config and processor load" in found.detail
    florence = checked(f"local-dir:{vlm_dirs['florence-2']}")
    assert florence.status == OK and "reads its text" in florence.detail
    words = checked(f"local-dir:{world_dir / 'chat'}")
    assert words.status == OK and "reads the caption and tags" in words.detail
    broken = checked(f"local-dir:{world_dir / 'no-such-model'}")
    assert broken.status == FAIL and "does not exist" in broken.detail


def test_the_vlm_sets_are_listed_and_a_vlm_needs_its_processor_downloaded(monkeypatch, capsys, tmp_path) -> None:
    from bot.ops.cli import main
    from tests.test_offline import fake_cached
    from vision import builtin_model_sets, load_model_set
    from vision.catalog.hub import PROCESSOR, hub_files

    sets = {name: load_model_set(name) for name in ("smolvlm-256m", "qwen2.5-vl-3b", "florence-2-base")}
    assert set(sets) <= set(builtin_model_sets())
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(tmp_path / "hub"))
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for name, model_set in sets.items():
        assert f"  {name}: {model_set.description}" in listed and str(model_set.answer_model) in listed
    smolvlm = sets["smolvlm-256m"]
    repo = smolvlm.answer_model.target
    assert not any(file.names == PROCESSOR for file in hub_files(smolvlm, tmp_path / "hub"))  # unknown until...
    fake_cached(tmp_path / "hub", repo, "config.json")  # ... its config says it is an Idefics3
    (tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40) / "config.json").write_text(
        '{"model_type": "idefics3"}'
    )
    needed = hub_files(smolvlm, tmp_path / "hub")
    assert any(file.repo == repo and file.names == PROCESSOR for file in needed)


def test_a_vlm_named_as_the_captioners_language_model_is_refused_in_one_line(vlm_dirs, world_dir, cache_dir) -> None:
    from vision import load_model_set

    guided = load_model_set(str(world_dir / "guided"))  # its captioner decodes with the language model itself
    model_set = guided.with_overrides(language_model=f"local-dir:{vlm_dirs['smolvlm']}")
    with pytest.raises(InvalidConfig, match="is not a causal language model") as refused:
        load_models(model_set, device="cpu", cache_dir=cache_dir)
    assert "answer_model" in refused.value.detail and "\n" not in refused.value.detail


def test_doctor_reads_a_bare_directory_answer_model_and_waits_for_a_hub_one(vlm_dirs, world_dir, tmp_path) -> None:
    from bot.ops.doctor import OK, WARN, check_answer_model
    from vision.catalog.settings import VisionSettings

    bare = VisionSettings(models=str(world_dir), answer_model=str(vlm_dirs["smolvlm"]))  # a path, no local-dir:
    assert check_answer_model(bare).status == OK
    hub = VisionSettings(models=str(world_dir), answer_model="hf-hub:HuggingFaceTB/SmolVLM-256M-Instruct")
    waiting = check_answer_model(hub.model_copy(update={"hub_cache_dir": tmp_path}))
    assert waiting.status == WARN and "not downloaded yet" in waiting.detail


async def test_the_terminal_reads_a_photo_again_for_a_model_that_sees_images(tmp_path) -> None:
    """`clipchat chat` with a VLM and no photo kept in memory: a follow-up's photo is read from its file again,
    as the bot downloads it again from Telegram; a file gone since is the same as one Telegram no longer serves."""
    from bot.core.incoming import PhotoFile
    from bot.ops.console import Terminal
    from clipchat.errors import Unavailable

    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff photo")
    terminal = Terminal()
    terminal.files[str(path)] = path.read_bytes()
    photo = PhotoFile(1, str(path), "unique")
    assert await terminal.fetch(photo) == await terminal.fetch(photo) == path.read_bytes()
    path.unlink()
    with pytest.raises(Unavailable):
        await terminal.fetch(photo)


def test_where_text_and_colour_go_to_a_model_that_sees_the_photo_and_stay_with_clip_otherwise(
    vlm_dirs, world_dir, cache_dir, heldout
) -> None:
    """CLIP named a place for "where is it?" ("an airport") and said "no, I don't see a text" for letters it cannot
    check; a model that has the photo answers them, and colour too when it chats (the table measured in
    tests/test_world_vlm.py). Without the photo, for a model that reads only words, or for Florence-2's tasks
    (where and colour are none of them), CLIP's routes answer as before; shape stays with CLIP."""
    models = with_answer_model(world_dir, cache_dir, vlm_dirs["smolvlm"])
    held = heldout[0]
    facts = models.describe([held.image])[0]
    torch.manual_seed(0)
    for question in ("where is it?", "is there any text?", "is there a word on it?", "what colour is the star?"):
        seen = answer(models, Conversation(facts), question, AnswerOptions(max_tokens=4), picture=held.image)
        assert seen.route == "open" and seen.details["saw"], question
        assert answer(models, Conversation(facts), question, picture=None).route != "open", question
    assert answer(models, Conversation(facts), "what shape is it?", picture=held.image).route == "identify"
    assert route(models, Conversation(facts), "what colour is it?", sees_images=True).messages  # a model server's
    assert isinstance(route(models, Conversation(facts), "what colour is it?"), Answer)
    tasks = with_answer_model(world_dir, cache_dir, vlm_dirs["florence-2"])
    assert answer(tasks, Conversation(facts), "what colour is it?", picture=held.image).route == "colour"
    assert answer(tasks, Conversation(facts), "where is it?", picture=held.image).route == "identify"
    # a model server that sees chats, whatever answers locally
    assert route(tasks, Conversation(facts), "what colour is it?", sees_images=True).messages
    read = answer(tasks, Conversation(facts), "is there any text?", picture=held.image)  # Florence-2's OCR task
    assert read.route == "read" and read.details["saw"]


def test_an_album_photo_named_by_position_is_not_sent_to_the_vlm_with_another_photos_pixels(
    vlm_dirs, world_dir, cache_dir, heldout
) -> None:
    """The photo fetched is the one under discussion; "where is the second one?" asks about another, so CLIP's route
    answers it as for a words-only model, rather than the VLM answering without that photo's pixels."""
    models = with_answer_model(world_dir, cache_dir, vlm_dirs["smolvlm"])
    first, second = models.describe([heldout[0].image, heldout[1].image])
    album = Conversation(first, album=(first, second), position=0)
    reply = answer(models, album, "where is the second one?", picture=heldout[0].image)
    assert reply.details.get("photo") == 1 and reply.route == "identify"
