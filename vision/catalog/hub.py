"""Before loading: are a model set's Hugging Face downloads on this machine, and if not, can they be fetched?

Without this check a machine with no network and no cached weights spent close to a minute in the hub
library's retries (each loader retrying on its own) and then failed with a traceback. Here the cache is
read first (no network); only when something is missing is the hub asked, once, with a short timeout,
and a failure is one line that says what to copy from where.

huggingface_hub and open_clip are imported inside the functions: the hub library reads its settings
(HF_HUB_OFFLINE, HF_HOME, ...) from the environment when it is first imported, and the `clipchat` command
puts those from `.env` there first.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from clipchat.errors import ModelNotFound

from .model_sets import HF_HUB, ModelSet, Ref, builtin_model_sets

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
# What transformers' from_pretrained reads for a causal language model: the config and one weights layout
LM_CONFIG = ("config.json",)
LM_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# ... and its tokenizer, from the same repository: a fast tokenizer's file or a slow one's vocabulary
LM_TOKENIZER = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
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


def hub_files(model_set: ModelSet) -> list[HubFile]:
    """The hub files of every reference in the set except a built-in CLIP name (see `clip_hub_files`)."""
    files: list[HubFile] = []
    if model_set.clip.startswith(HF_HUB):
        repo = model_set.clip[len(HF_HUB) :].strip("/")
        files += [HubFile(repo, CLIP_CONFIG, "CLIP"), HubFile(repo, CLIP_WEIGHTS, "CLIP")]
    files += language_model_files(model_set.language_model, "language model")
    if model_set.answer_model is not None:
        files += language_model_files(model_set.answer_model, "answer model")
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


def missing_files(files: list[HubFile], cache: Path) -> list[HubFile]:
    """Those of `files` with none of their names in the hub cache; reads only the disk."""
    from huggingface_hub import try_to_load_from_cache

    return [
        file
        for file in files
        if not any(isinstance(try_to_load_from_cache(file.repo, name, cache_dir=cache), str) for name in file.names)
    ]


def ensure_available(
    model_set: ModelSet, hub_cache_dir: Path | str | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """Return when the set's hub files are cached, or can be downloaded; else raise ModelNotFound, in seconds."""
    from huggingface_hub import constants

    cache = hub_cache_folder(hub_cache_dir)
    missing = missing_files(hub_files(model_set), cache)
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
