"""Model choices as data: which CLIP, which language model, which captioner, which tag vocabulary.

A model set is a small JSON file. Built-in sets live in `model_configs/`; any
directory holding a `clipchat.json` is a set too, which is how an operator's own
models and the test world are loaded. References inside a set are parsed here
and nowhere else:

    ViT-B-32-quickgelu        an open_clip built-in name (with `clip_pretrained`)
    hf-hub:ORG/REPO           a repository on the Hugging Face Hub
    hf-hub:ORG/REPO/FILE      one file in such a repository
    local-dir:PATH            a local directory (relative to the set's own file)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from clipchat.errors import InvalidConfig, ModelNotFound

HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
CLIPCAP = "clipcap:"
GUIDED = "guided"
MANIFEST = "clipchat.json"
DEFAULT = "default"
# ClipCap's COCO checkpoint: published COCO CIDEr 108, against 14.6 for CLIP-guided stock GPT-2 (ZeroCap).
DEFAULT_SET = "clipcap-coco"
KNOWN_KEYS = frozenset(
    {
        "clip",
        "clip_pretrained",
        "language_model",
        "captioner",
        "answer_model",
        "guided_prompt",
        "vocabulary",
        "tag_templates",
        "description",
    }
)


@dataclass(frozen=True)
class Ref:
    """Where weights live: `scheme` is "hf-hub", "local-dir" or "name" (a bare hub id or built-in name)."""

    scheme: str
    target: str

    @classmethod
    def parse(cls, text: str, base: Path | None = None) -> Ref:
        if text.startswith(HF_HUB):
            target = text[len(HF_HUB) :].strip("/")
            if not target:
                raise InvalidConfig(f"{text!r} names no repository: write hf-hub:ORG/REPO.")
            return cls("hf-hub", target)
        if text.startswith(LOCAL_DIR):
            path = Path(text[len(LOCAL_DIR) :]).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            return cls("local-dir", str(path))
        return cls("name", text)

    def __str__(self) -> str:
        return self.target if self.scheme == "name" else f"{self.scheme}:{self.target}"

    @property
    def pretrained_id(self) -> str:
        """What `from_pretrained` takes: a hub id or a directory."""
        return self.target

    def hub_file(self) -> tuple[str, str]:
        """Split `ORG/REPO/FILE` into repository id and file name."""
        parts = self.target.split("/")
        if len(parts) < 3:
            raise InvalidConfig(f"{self} names a repository, not a file: write hf-hub:ORG/REPO/FILE.")
        return "/".join(parts[:2]), "/".join(parts[2:])


@dataclass(frozen=True)
class CaptionerChoice:
    """`guided` (no checkpoint), `prefix` (our own format) or `clipcap` (ClipCap's published .pt files)."""

    kind: str
    location: Ref | None = None

    @classmethod
    def parse(cls, text: str, base: Path | None = None) -> CaptionerChoice:
        if text == GUIDED:
            return cls("guided")
        if text.startswith(CLIPCAP):
            location = text[len(CLIPCAP) :]
            ref = Ref.parse(location, base)
            if ref.scheme == "name":  # a plain path to a .pt file
                path = Path(location).expanduser()
                ref = Ref("local-dir", str(path if path.is_absolute() or base is None else base / path))
            return cls("clipcap", ref)
        ref = Ref.parse(text, base)
        if ref.scheme == "name":
            raise InvalidConfig(
                f"Captioner {text!r} is not a reference: use 'guided', local-dir:PATH, "
                "hf-hub:ORG/REPO, or clipcap:FILE for a ClipCap checkpoint."
            )
        return cls("prefix", ref)

    @property
    def checkpoint(self) -> Ref:
        """Where a prefix or ClipCap captioner's weights are; guided decoding has none."""
        if self.location is None:
            raise InvalidConfig(f"Captioner {self} has no checkpoint: it decodes with the language model alone.")
        return self.location

    def __str__(self) -> str:
        if self.kind == "guided":
            return GUIDED
        return (CLIPCAP if self.kind == "clipcap" else "") + str(self.location)


@dataclass(frozen=True)
class ModelSet:
    name: str
    clip: str  # an open_clip model name, or hf-hub:/local-dir: (open_clip parses those itself)
    language_model: Ref
    captioner: CaptionerChoice
    clip_pretrained: str | None = None  # only with a built-in open_clip name
    answer_model: Ref | None = None  # any causal LM for open questions; None: the captioner's language model
    guided_prompt: str = ""  # words the guided captioner starts from, e.g. "A picture of"
    vocabulary: str = "everyday"  # a built-in vocabulary name or a path to a vocabulary file
    tag_templates: tuple[str, ...] | None = None  # None: the tagger's default prompt ensemble
    description: str = ""

    @classmethod
    def from_dict(cls, name: str, data: dict, base: Path | None = None) -> ModelSet:
        missing = {"clip", "language_model", "captioner"} - set(data)
        if missing:
            raise InvalidConfig(f"Model set {name!r} lacks {', '.join(sorted(missing))}.")
        unknown = set(data) - KNOWN_KEYS
        if unknown:
            raise InvalidConfig(
                f"Model set {name!r} has unknown keys {', '.join(sorted(unknown))}; "
                f"known keys are {', '.join(sorted(KNOWN_KEYS))}."
            )
        clip = data["clip"]
        if clip.startswith(LOCAL_DIR):
            clip = f"{LOCAL_DIR}{Ref.parse(clip, base).target}"
        vocabulary = data.get("vocabulary", "everyday")
        if base is not None and vocabulary.endswith(".txt") and not Path(vocabulary).is_absolute():
            vocabulary = str(base / vocabulary)
        templates = data.get("tag_templates")
        return cls(
            name=name,
            clip=clip,
            clip_pretrained=data.get("clip_pretrained"),
            language_model=Ref.parse(data["language_model"], base),
            captioner=CaptionerChoice.parse(data["captioner"], base),
            answer_model=Ref.parse(data["answer_model"], base) if data.get("answer_model") else None,
            guided_prompt=data.get("guided_prompt", ""),
            vocabulary=vocabulary,
            tag_templates=tuple(templates) if templates else None,
            description=data.get("description", ""),
        )

    def with_overrides(
        self,
        *,
        clip: str | None = None,
        clip_pretrained: str | None = None,
        language_model: str | None = None,
        captioner: str | None = None,
        answer_model: str | None = None,
    ) -> ModelSet:
        """The same set with some references replaced, as settings from the environment do."""
        changes: dict = {}
        if clip:
            changes["clip"] = clip
            changes["clip_pretrained"] = clip_pretrained or self._pretrained_tag_for(clip)
        elif clip_pretrained:
            changes["clip_pretrained"] = clip_pretrained
        if language_model:
            changes["language_model"] = Ref.parse(language_model)
        if captioner:
            changes["captioner"] = CaptionerChoice.parse(captioner)
        if answer_model:
            changes["answer_model"] = Ref.parse(answer_model)
        return replace(self, **changes) if changes else self

    def _pretrained_tag_for(self, clip: str) -> str | None:
        """The set's own tag, for another built-in CLIP overriding its CLIP without naming one.

        Dropping it would load random weights; keeping one the new CLIP lacks would fail in open_clip.
        So the tag stays when open_clip has it for the new name, and otherwise the operator chooses.
        Unknown names and names without any weights pass as they are: `load_clip` answers for those.
        """
        if clip.startswith((HF_HUB, LOCAL_DIR)):
            return None
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(clip) if clip in open_clip.list_models() else []
        if not tags or self.clip_pretrained in tags:
            return self.clip_pretrained if tags else None
        if self.clip_pretrained is None:  # the set ran another kind of CLIP; there is no tag to keep
            raise InvalidConfig(
                f"CLIP {clip} needs its weights chosen: set CLIPCHAT_CLIP_PRETRAINED to one of {', '.join(tags)}."
            )
        raise InvalidConfig(
            f"open_clip has no {self.clip_pretrained!r} weights for CLIP {clip} (model set "
            f"{self.name} uses {self.clip_pretrained!r}): set CLIPCHAT_CLIP_PRETRAINED to one of "
            f"{', '.join(tags)}."
        )


def builtin_model_sets() -> list[str]:
    folder = resources.files("vision.catalog") / "model_configs"
    return sorted(entry.name.removesuffix(".json") for entry in folder.iterdir() if entry.name.endswith(".json"))


def load_model_set(name_or_path: str) -> ModelSet:
    """A built-in set by name, a directory holding clipchat.json, or a manifest file."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise ModelNotFound(
                f"{path} has no {MANIFEST}; a model directory needs one naming its clip, language_model and captioner."
            )
        return _read_manifest(manifest)
    if path.suffix == ".json" and path.is_file():
        return _read_manifest(path)
    names = builtin_model_sets()
    if name_or_path == DEFAULT:
        name_or_path = DEFAULT_SET
    if name_or_path in names:
        text = (resources.files("vision.catalog") / "model_configs" / f"{name_or_path}.json").read_text()
        return ModelSet.from_dict(name_or_path, json.loads(text))
    listed = ", ".join(f"{name} ({DEFAULT})" if name == DEFAULT_SET else name for name in names)
    raise ModelNotFound(
        f"No model set called {name_or_path!r}. Built-in sets: {listed}; or give a directory that holds {MANIFEST}."
    )


def _read_manifest(path: Path) -> ModelSet:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidConfig(f"{path} is not valid JSON: {error}") from error
    return ModelSet.from_dict(path.parent.name, data, base=path.parent.resolve())
