"""Is a model set on this machine? Where each of its models lives, how much disk it takes, and, before loading,
whether what is missing can be fetched.

`clipchat doctor` and `clipchat models` ask `presence`; loading asks `ensure_available`. Nothing here downloads
or loads weights. Hub models are looked up in the Hugging Face cache (`hub_cache_dir`, else HF_HOME's), as the
loaders would find them.

Without the check before loading, a machine with no network and no cached weights spent close to a minute in
the hub library's retries (each loader retrying on its own) and then failed with a traceback. Here the cache is
read first (no network); only when something is missing is the hub asked, once, with a short timeout, and a
failure is one line that says what to copy from where.

huggingface_hub and open_clip are imported inside the functions: the hub library reads its settings
(HF_HUB_OFFLINE, HF_HOME, ...) from the environment when it is first imported, and the `clipchat` command
puts those from `.env` there first.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from clipchat.errors import ClipchatError, ModelNotFound

from .model_sets import HF_HUB, LOCAL_DIR, ModelSet, Ref, builtin_model_sets

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
# What transformers' from_pretrained reads for a causal language model: the config and one weights layout
LM_CONFIG = ("config.json",)
LM_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# ... and its tokenizer, from the same repository: a fast tokenizer's file or a slow one's vocabulary
LM_TOKENIZER = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
# ... and a vision-language model's processor (image processor, chat template): older saves have the first
PROCESSOR = ("preprocessor_config.json", "processor_config.json")
# open_clip: an hf-hub: model's config, and its weights (safetensors preferred, as open_clip does)
CLIP_CONFIG = ("open_clip_config.json",)
CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class HubFile:
    """One file a model needs from a hub repository; any of `names` will do (weights come in several formats)."""

    repo: str
    names: tuple[str, ...]
    role: str  # for people: "CLIP", "language model", ...


def hub_cache_folder(hub_cache_dir: Path | str | None = None) -> Path:
    """Where Hugging Face downloads go: clipchat's setting, else the hub's own (HF_HUB_CACHE, HF_HOME/hub)."""
    if hub_cache_dir:
        return Path(hub_cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_files(model_set: ModelSet, cache: Path | None = None) -> list[HubFile]:
    """The hub files of every reference in the set except a built-in CLIP name (see `clip_hub_files`); `cache`:
    where an answer model's config may already be, which says whether it needs a processor too."""
    files: list[HubFile] = []
    if model_set.clip.startswith(HF_HUB):
        repo = model_set.clip[len(HF_HUB) :].strip("/")
        files += [HubFile(repo, CLIP_CONFIG, "CLIP"), HubFile(repo, CLIP_WEIGHTS, "CLIP")]
    files += language_model_files(model_set.language_model, "language model")
    if model_set.answer_model is not None:
        files += answer_model_files(model_set.answer_model, "answer model", cache)
    captioner = model_set.captioner
    if captioner.location is not None and captioner.location.scheme == "hf-hub":
        if captioner.kind == "clipcap":
            repo, name = captioner.location.hub_file()
            files.append(HubFile(repo, (name,), "captioner"))
        else:  # our own format; a language model bundled or named inside it is only known once it is here
            files += [
                HubFile(captioner.location.target, ("captioner.json",), "captioner"),
                HubFile(captioner.location.target, ("mapper.safetensors",), "captioner"),
            ]
    return files


def language_model_files(ref: Ref, role: str) -> list[HubFile]:
    """What transformers reads for a causal LM from the hub (config, weights, tokenizer); [] for a directory."""
    # A bare name is a hub id unless it is a directory here (transformers decides the same way)
    if ref.scheme == "hf-hub" or (ref.scheme == "name" and not Path(ref.target).exists()):
        return [
            HubFile(ref.target, LM_CONFIG, role),
            HubFile(ref.target, LM_WEIGHTS, role),
            HubFile(ref.target, LM_TOKENIZER, role),
        ]
    return []


def answer_model_files(ref: Ref, role: str, cache: Path | None) -> list[HubFile]:
    """A causal LM's files, and a vision-language model's processor when its config (once here) says it is one:
    until the config is here, what the model is cannot be known without asking the hub, and its loading will."""
    files = language_model_files(ref, role)
    if files and sees_images(ref.target, cache):
        files.append(HubFile(ref.target, PROCESSOR, role))
    return files


def sees_images(repo: str, cache: Path | None) -> bool:
    """Whether the cached config of `repo` is an image-text-to-text model's (transformers' public mapping); False
    when no config is cached or it cannot be read."""
    config = cached_file(repo, LM_CONFIG[0], cache)
    if config is None:
        return False
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return False
    from transformers import CONFIG_MAPPING, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    return model_type in CONFIG_MAPPING and CONFIG_MAPPING[model_type] in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING


def clip_hub_files(name: str, pretrained: str | None) -> list[HubFile]:
    """The weights an open_clip built-in name and pretrained tag download, per open_clip's own table.

    This imports open_clip (seconds), so `ensure_available` asks only once everything else is here.
    """
    if not pretrained or name.startswith(("hf-hub:", "local-dir:")):
        return []
    from open_clip import get_pretrained_cfg

    hub = get_pretrained_cfg(name, pretrained).get("hf_hub", "")
    if not hub:  # unknown name or tag (load_clip says so), or weights from a plain URL: not the hub's cache
        return []
    repo = "/".join(hub.split("/")[:2])  # ORG/REPO/ (open_clip's default file) or ORG/REPO/FILE
    filename = hub[len(repo) :].strip("/")
    if not filename or filename == CLIP_WEIGHTS[1]:
        return [HubFile(repo, CLIP_WEIGHTS, "CLIP")]
    # open_clip takes a .safetensors twin of a .bin or .pth file when the repository has one
    twin = (filename[:-4] + ".safetensors",) if filename.endswith((".bin", ".pth")) else ()
    return [HubFile(repo, (filename, *twin), "CLIP")]


def cached_file(repo: str, filename: str, cache: Path | None) -> Path | None:
    """Where the hub cache (`cache`, else the hub's own) holds this file, or None; reads only the disk."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache)
    return Path(found) if isinstance(found, str) else None  # else None or the "known absent" marker


def missing_files(files: list[HubFile], cache: Path | None) -> list[HubFile]:
    """Those of `files` with none of their names in the hub cache; reads only the disk."""
    return [file for file in files if not any(cached_file(file.repo, name, cache) for name in file.names)]


def ensure_available(
    model_set: ModelSet, hub_cache_dir: Path | str | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """Return when the set's hub files are cached, or can be downloaded; else raise ModelNotFound, in seconds."""
    from huggingface_hub import constants

    cache = hub_cache_folder(hub_cache_dir)
    missing = missing_files(hub_files(model_set, cache), cache)
    if not missing:  # only now is open_clip worth importing: what is missing is already known otherwise
        missing = missing_files(clip_hub_files(model_set.clip, model_set.clip_pretrained), cache)
    if not missing:
        return
    roles: dict[str, str] = {}
    for file in missing:  # one mention per repository: its first role (the answer model is often the captioner's)
        roles.setdefault(file.repo, file.role)
    needs = ", ".join(f"{repo} ({role})" for repo, role in roles.items())
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(
            f"Model set {model_set.name!r} is not downloaded: {cache} lacks {needs}, and "
            f"HF_HUB_OFFLINE is set. {_prefetch_hint(model_set, cache)}"
        )
    problem = probe(constants.ENDPOINT, timeout_s)
    if problem:
        raise ModelNotFound(
            f"Model set {model_set.name!r} is not downloaded: {cache} lacks {needs}, and "
            f"{_host(constants.ENDPOINT)} cannot be reached ({problem}). {_prefetch_hint(model_set, cache)}"
        )
    log.info("downloading into %s: %s", cache, needs)


def _prefetch_hint(model_set: ModelSet, cache: Path) -> str:
    command = "clipchat prefetch" + (f" --models {model_set.name}" if model_set.name in builtin_model_sets() else "")
    return (
        f"On a machine online, run `{command}` (same settings), then copy the Hugging Face cache folder it "
        f"names to {cache} here."
    )


def probe(url: str, timeout_s: float) -> str | None:
    """None when `url` answers at all (any HTTP status), else why not, within `timeout_s`.

    The request runs on a daemon thread that is left behind on a timeout: urllib's timeout does
    not cover the name lookup, which a broken resolver can stall for much longer.
    """
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # it answered, with an error status: reachable
            outcome.append(None)
        except (OSError, ValueError) as error:  # URLError, timeouts, refused connections; ValueError: a bad URL
            outcome.append(str(getattr(error, "reason", None) or error))

    thread = threading.Thread(target=ask, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else f"no answer in {timeout_s:g} s"


def _host(endpoint: str) -> str:
    """The endpoint without credentials a mirror's URL may carry (https://user:password@mirror)."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" if parts.hostname else endpoint


# What `presence` finds of each model, for `clipchat doctor` and `clipchat models`
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
        return cached_file(repo_id, filename, self.cache_dir)

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
        found.append(_file("captioner", str(captioner), captioner.checkpoint, hub))
    else:
        found.append(_repository("captioner", captioner.checkpoint, hub))
    if model_set.answer_model is not None:
        found.append(_language_model("answer model", model_set.answer_model, hub, answer=True))
    return found


def _clip(model_set: ModelSet, hub: HubCache, allow_random_weights: bool) -> Presence:
    name, tag = model_set.clip, model_set.clip_pretrained
    shown = f"{name} ({tag})" if tag else name
    from ..models.encoder import check_clip_reference  # torch and open_clip: only when asked

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


def _language_model(role: str, ref: Ref, hub: HubCache, answer: bool = False) -> Presence:
    """On disk only when every file the start-up check wants is (config, weights, tokenizer; a VLM answer model's
    processor): doctor and `clipchat models` then agree with it."""
    files = answer_model_files(ref, role, hub.cache_dir) if answer else language_model_files(ref, role)
    lacking = missing_files(files, hub.cache_dir)
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
    scaled = size / 1000
    for unit in ("kB", "MB"):
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
        scaled /= 1000
    return f"{scaled:.1f} GB"
