"""Where each model of a set lives on this machine, whether it is there yet, and how much disk it takes.

`clipchat doctor` and `clipchat models` ask this; nothing here downloads or loads weights. Hub models
are looked up in the Hugging Face cache (`hub_cache_dir`, else HF_HOME's), as the loaders would find them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipchat.errors import ClipchatError

from ..models.encoder import check_clip_reference
from .hub import clip_hub_files, hub_cache_folder, language_model_files, missing_files
from .model_sets import HF_HUB, LOCAL_DIR, ModelSet, Ref

ON_DISK = "on disk"
NOT_DOWNLOADED = "not downloaded"  # the bot downloads it at first start; `clipchat prefetch` does it now
MISSING = "missing"  # a local path that is not there: nothing will fetch it
INVALID = "invalid"  # a reference that cannot load at all; `detail` says why and what to set
NOTHING = "nothing to fetch"  # no weights: CLIP-guided decoding, or random weights allowed on purpose


@dataclass(frozen=True)
class Presence:
    role: str  # "clip", "language model", "captioner" or "answer model"
    reference: str  # as the set (or an override) writes it
    state: str
    detail: str = ""  # where it is, or what is wrong
    size: int | None = None  # bytes on disk, when there


class HubCache:
    """The Hugging Face cache, scanned at most once for sizes."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self._sizes: dict[str, int] | None = None

    def file(self, repo_id: str, filename: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, cache_dir=self.cache_dir)
        return Path(found) if isinstance(found, str) else None  # else None or the "known absent" marker

    def snapshot(self, repo_id: str) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo_id, cache_dir=self.cache_dir, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):  # ValueError: not a repository id at all
            return None

    def repo_size(self, repo_id: str) -> int | None:
        if self._sizes is None:
            from huggingface_hub import scan_cache_dir
            from huggingface_hub.errors import CacheNotFound

            try:
                info = scan_cache_dir(self.cache_dir)
            except CacheNotFound:
                self._sizes = {}
            else:
                self._sizes = {repo.repo_id: repo.size_on_disk for repo in info.repos if repo.repo_type == "model"}
        return self._sizes.get(repo_id)


def presence(
    model_set: ModelSet, hub_cache_dir: Path | None = None, allow_random_weights: bool = False
) -> list[Presence]:
    """One entry per model the set needs: CLIP, language model, captioner and (when set) answer model."""
    hub = HubCache(hub_cache_dir)
    found = [
        _clip(model_set, hub, allow_random_weights),
        _language_model("language model", model_set.language_model, hub),
    ]
    captioner = model_set.captioner
    if captioner.kind == "guided":
        found.append(Presence("captioner", str(captioner), NOTHING, "CLIP-guided decoding with the language model"))
    elif captioner.kind == "clipcap":
        found.append(_file("captioner", str(captioner), captioner.location, hub))
    else:
        found.append(_repository("captioner", captioner.location, hub))
    if model_set.answer_model is not None:
        found.append(_language_model("answer model", model_set.answer_model, hub))
    return found


def _clip(model_set: ModelSet, hub: HubCache, allow_random_weights: bool) -> Presence:
    name, tag = model_set.clip, model_set.clip_pretrained
    shown = f"{name} ({tag})" if tag else name
    try:
        check_clip_reference(name, tag, allow_random_weights)
    except ClipchatError as error:
        return Presence("clip", shown, INVALID, error.detail)
    if name.startswith(LOCAL_DIR):
        return _local("clip", shown, Path(name[len(LOCAL_DIR) :]))
    if name.startswith(HF_HUB):
        return _repository("clip", Ref.parse(name), hub)
    if tag is None:  # a built-in name: check_clip_reference let it through on purpose
        return Presence("clip", shown, NOTHING, "random weights, as CLIPCHAT_ALLOW_RANDOM_WEIGHTS allows")
    if Path(tag).expanduser().is_file():  # open_clip takes a checkpoint file in place of a tag
        return _local("clip", shown, Path(tag).expanduser())
    import open_clip

    config = open_clip.get_pretrained_cfg(name, tag)
    if config.get("file"):
        return _local("clip", shown, Path(config["file"]))
    weights = clip_hub_files(name, tag)  # open_clip's weights file in the hub (any of its formats); [] if at a URL
    if weights:
        [needed] = weights
        path = next((found for found in (hub.file(needed.repo, n) for n in needed.names) if found), None)
        if path is None:
            return Presence("clip", shown, NOT_DOWNLOADED, f"{needed.repo} on the Hugging Face Hub")
        return Presence("clip", shown, ON_DISK, str(path), path.stat().st_size)
    # Weights only at a URL: open_clip keeps them in its own folder, under the URL's file name.
    folder = hub.cache_dir or Path("~/.cache/clip").expanduser()
    path = Path(folder) / os.path.basename(config.get("url", ""))
    if path.is_file():
        return Presence("clip", shown, ON_DISK, str(path), path.stat().st_size)
    return Presence("clip", shown, NOT_DOWNLOADED, config.get("url", ""))


def _language_model(role: str, ref: Ref, hub: HubCache) -> Presence:
    """On disk only when every file the start-up check wants is (config, weights, tokenizer): doctor and
    `clipchat models` then agree with it."""
    files = language_model_files(ref, role)
    lacking = missing_files(files, hub_cache_folder(hub.cache_dir)) if files else []
    if lacking:
        names = ", ".join(file.names[0] for file in lacking)
        return Presence(role, str(ref), NOT_DOWNLOADED, f"{ref.target} on the Hugging Face Hub (no {names} here)")
    return _repository(role, ref, hub)


def _repository(role: str, ref: Ref, hub: HubCache) -> Presence:
    """A directory's worth of weights: local-dir:PATH, or a whole hub repository (hf-hub:ORG/REPO or a bare id)."""
    if ref.scheme == "local-dir":
        return _local(role, str(ref), Path(ref.target))
    snapshot = hub.snapshot(ref.target)
    if snapshot is None:
        return Presence(role, str(ref), NOT_DOWNLOADED, f"{ref.target} on the Hugging Face Hub")
    return Presence(role, str(ref), ON_DISK, str(snapshot), hub.repo_size(ref.target))


def _file(role: str, shown: str, ref: Ref, hub: HubCache) -> Presence:
    """One file: a ClipCap .pt, at a local path or hf-hub:ORG/REPO/FILE."""
    if ref.scheme == "local-dir":
        return _local(role, shown, Path(ref.target))
    try:
        repo_id, filename = ref.hub_file()
    except ClipchatError as error:
        return Presence(role, shown, INVALID, error.detail)
    path = hub.file(repo_id, filename)
    if path is None:
        return Presence(role, shown, NOT_DOWNLOADED, f"{filename} in {repo_id} on the Hugging Face Hub")
    return Presence(role, shown, ON_DISK, str(path), path.stat().st_size)


def _local(role: str, shown: str, path: Path) -> Presence:
    if not path.exists():
        return Presence(role, shown, MISSING, f"{path} does not exist")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return Presence(role, shown, ON_DISK, str(path), sum(p.stat().st_size for p in files))


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}"
