"""Zero-shot tags: per-label accuracy on held-out photos, call-time labels, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipchat.errors import InvalidInput
from tests.conftest import by_split
from tests.world.clip_training import tag_label
from tests.world.scenes import ATTRIBUTES
from vision.models.tagger import Vocabulary, ZeroShotTagger, load_vocabulary, parse_label_list


def test_top1_tag_for_every_scene_label(world_models, heldout, figure) -> None:
    vectors = world_models.encoder.embed_images([h.image for h in heldout])
    everything = world_models.tagger.tag(vectors, top_k=len(world_models.tagger.vocabulary.labels), threshold=0.0)
    best = [{tag.section: tag for tag in reversed(tags)} for tags in everything]  # each section's winner
    winners = {h.path: b for h, b in zip(heldout, best)}
    for split in ("seen", "unseen"):
        correct = {
            a: by_split(heldout, lambda h, a=a: winners[h.path][a].label == tag_label(a, getattr(h.scene, a)))[split]
            for a in ATTRIBUTES
        }
        overall = sum(correct.values()) / len(correct)
        for attribute, accuracy in correct.items():
            figure(f"top-1 tag accuracy, {split} combinations: {attribute}", accuracy)
        figure(f"top-1 tag accuracy over all scene labels, {split} combinations", overall)
        if split == "seen":
            assert overall >= 0.95 and min(correct.values()) >= 0.90, (split, correct)
        else:  # 48 photos: one miss is 2 points; shape, the hard attribute, measured 0.875 on one build
            assert overall >= 0.90 and min(correct.values()) >= 0.80, (split, correct)


def test_described_photos_carry_their_tags(world_models, heldout) -> None:
    held = heldout[3]
    [description] = world_models.describe([held.image], top_k_tags=4, tag_threshold=0.0)
    labels = [t.label for t in description.tags]
    assert len(labels) == 4 and description.tags[0].score >= description.tags[-1].score
    assert held.scene.colour in labels


def test_custom_labels_at_call_time(world_models, heldout) -> None:
    labels = parse_label_list("a red, a blue or a green?")
    assert labels == ["red", "blue", "green"]
    sample = [h for h in heldout if h.scene.colour in labels]
    vectors = world_models.encoder.embed_images([h.image for h in sample])
    answers = world_models.tagger.classify(vectors, labels)
    right = sum(a[0].label == h.scene.colour for a, h in zip(answers, sample))
    assert right / len(sample) >= 0.9
    assert abs(sum(t.score for t in answers[0]) - 1) < 1e-4
    with pytest.raises(InvalidInput):
        world_models.tagger.classify(vectors, ["red"])


class CountingEncoder:
    """Passes through to the real encoder, counting the texts it embeds (open_clip's ensemble tokenizes them)."""

    def __init__(self, encoder) -> None:
        self.encoder, self.texts = encoder, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def tokenizer(self, texts):
        self.texts += len(texts)
        return self.encoder.tokenizer(texts)

    def embed_texts(self, texts):
        self.texts += len(texts)
        return self.encoder.embed_texts(texts)


def test_vocabulary_embeddings_are_computed_once_per_model_and_vocabulary(world_models, tmp_path: Path) -> None:
    vocabulary = world_models.tagger.vocabulary
    first = CountingEncoder(world_models.encoder)
    ZeroShotTagger(first, vocabulary, cache_dir=tmp_path)
    assert first.texts == len(vocabulary.labels) * 6
    again = CountingEncoder(world_models.encoder)
    cached = ZeroShotTagger(again, vocabulary, cache_dir=tmp_path)
    assert again.texts == 0
    assert torch.allclose(cached.vocabulary_embeddings, world_models.tagger.vocabulary_embeddings, atol=1e-6)
    edited = Vocabulary.parse("\n".join([*vocabulary.labels, "hexagon"]))
    changed = CountingEncoder(world_models.encoder)
    ZeroShotTagger(changed, edited, cache_dir=tmp_path)
    assert changed.texts > 0
    assert len(list((tmp_path / "tag-embeddings").glob("*.safetensors"))) == 2


def test_vocabulary_files() -> None:
    vocabulary = Vocabulary.parse("# comment\n[animals]\ncat\ndog  # best friend\ncat\n\n[places]\nbeach\n")
    assert vocabulary.sections == (("animals", ("cat", "dog")), ("places", ("beach",)))
    everyday = load_vocabulary("everyday")
    assert len(everyday.sections) == 1 and 250 <= len(everyday.labels) <= 400
    assert {"dog", "beach", "pizza", "sunset"} <= set(everyday.labels)


def test_label_lists_from_a_question() -> None:
    assert parse_label_list("cat / dog; the fox and an owl") == ["cat", "dog", "fox", "owl"]
    assert parse_label_list("Cat, cat, CAT") == ["Cat"]


def test_labels_the_vocabulary_has_are_not_embedded_again(world_models) -> None:
    vocabulary = world_models.tagger.vocabulary
    counting = CountingEncoder(world_models.encoder)
    tagger = ZeroShotTagger(counting, vocabulary)
    counting.texts = 0
    mixed = tagger.label_embeddings(["hexagon", *vocabulary.labels])  # "is there a hexagon?" against everything
    assert counting.texts == len(tagger.templates)  # only the new label was embedded
    assert torch.allclose(mixed[1:], tagger.vocabulary_embeddings, atol=1e-6)
    assert torch.allclose(mixed[0], tagger._embed_labels(["hexagon"])[0], atol=1e-6)
