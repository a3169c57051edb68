"""The vision commands: describe, train-captioner, evaluate, prefetch, models."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import fields
from pathlib import Path

from clipchat.errors import BadImage

from .catalog.settings import VisionSettings
from .decoding.strategies import METHODS, DecodingOptions


def add_commands(commands: argparse._SubParsersAction) -> None:
    describe = commands.add_parser("describe", help="caption and tag photos")
    describe.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    _add_model_arguments(describe)
    _add_decoding_arguments(describe)
    describe.add_argument("--tags", type=int, default=5, metavar="K", help="how many tags to show (default 5)")
    describe.add_argument("--json", action="store_true", help="print one JSON object per photo")
    describe.set_defaults(handler=run_describe)

    train = commands.add_parser("train-captioner", help="train a prefix captioner from a captions file")
    train.add_argument("captions", type=Path, help="COCO-style .json or .jsonl of {image, caption}")
    train.add_argument("--out", type=Path, required=True, help="directory for the trained captioner")
    train.add_argument("--images", type=Path, help="directory image paths are relative to")
    default = _training_defaults()
    train.add_argument(
        "--epochs", type=int, default=default["epochs"], help="passes over the data (default %(default)s)"
    )
    train.add_argument("--batch-size", type=int, default=default["batch_size"], help="default %(default)s")
    train.add_argument("--lr", type=float, default=default["lr"], help="learning rate (default %(default)s)")
    train.add_argument(
        "--prefix-length",
        type=int,
        default=default["prefix_length"],
        help="GPT-2 tokens per image (default %(default)s)",
    )
    train.add_argument(
        "--mapper", choices=("mlp", "transformer"), default=default["mapper"], help="default %(default)s"
    )
    train.add_argument("--finetune-gpt2", action="store_true", help="train GPT-2 too (ClipCap's MLP setting)")
    train.add_argument("--no-normalize-prefix", action="store_true", help="feed raw CLIP vectors, as ClipCap did")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    train.add_argument("--seed", type=int, default=default["seed"], help="default %(default)s")
    train.add_argument(  # unlike TrainingOptions (0: as asked), people get validation unless they turn it off
        "--validation-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of the images held out to measure validation loss each epoch (default 0.1; "
        "0 trains on all of them, without validation)",
    )
    _add_model_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="score a captioner: BLEU-4, CIDEr, CLIPScore")
    evaluate.add_argument("captions", type=Path, help="COCO-style .json or .jsonl of {image, caption}")
    evaluate.add_argument("--images", type=Path, help="directory image paths are relative to")
    evaluate.add_argument("--limit", type=int, help="score only the first N images")
    evaluate.add_argument("--json", action="store_true", help="print machine-readable results")
    evaluate.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="also write DIR/index.html: every photo with its caption, references, tags and CLIPScore, worst first",
    )
    _add_model_arguments(evaluate)
    _add_decoding_arguments(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    models = commands.add_parser("models", help="list the built-in model sets, what is downloaded and its size")
    models.add_argument(
        "--models", metavar="DIR_OR_NAME", help="the set to mark as configured (default: CLIPCHAT_MODELS)"
    )
    models.set_defaults(handler=run_models)

    prefetch = commands.add_parser(
        "prefetch", help="download every model the configuration needs, so the bot then starts offline"
    )
    _add_model_arguments(prefetch)
    prefetch.set_defaults(handler=run_prefetch)


def _training_defaults() -> dict[str, object]:
    """TrainingOptions' defaults, so the command line and the library never disagree."""
    from .training.options import TrainingOptions  # the standard library only: no torch, no [train] extra

    return {field.name: field.default for field in fields(TrainingOptions)}


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        metavar="DIR_OR_NAME",
        help="model set: a built-in name or a directory with clipchat.json (default: CLIPCHAT_MODELS)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: CLIPCHAT_DEVICE)")
    parser.add_argument("--dtype", help="auto, float32, float16 or bfloat16 (default: CLIPCHAT_DTYPE)")


def _add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=METHODS,
        help="decoding method (default: greedy, or guided when the model set has no captioning checkpoint)",
    )
    parser.add_argument("--beam-size", type=int)
    parser.add_argument(
        "--candidates", type=int, default=1, help="generate N captions and keep the one CLIP finds closest to the photo"
    )


def _settings(args: argparse.Namespace, settings: VisionSettings) -> VisionSettings:
    updates = {k: getattr(args, k) for k in ("models", "device", "dtype") if getattr(args, k, None)}
    return settings.model_copy(update=updates)


def _options(args: argparse.Namespace, models) -> DecodingOptions:
    method = args.method or models.captioner.methods[0]
    if args.candidates > 1 and method == "greedy":
        method = "beam"
    return DecodingOptions(method=method, beam_size=args.beam_size, num_candidates=args.candidates)


def _load(settings: VisionSettings):
    from .pipeline import load_models

    return load_models(
        settings.model_set(),
        settings.device,
        settings.dtype,
        settings.cache_dir,
        settings.hub_cache_dir,
        allow_random_weights=settings.allow_random_weights,
        speed_paths=settings.speed_paths,
    )


def run_describe(args: argparse.Namespace, settings: VisionSettings) -> int:
    from .intake.images import load_image

    settings = _settings(args, settings)
    images, names, failures = [], [], 0
    for path in args.photos:
        try:
            images.append(load_image(path.read_bytes(), settings.image_limits()))
            names.append(path)
        except (OSError, BadImage) as error:
            failures += 1
            message = error.user_message if isinstance(error, BadImage) else f"cannot read it ({error.strerror})"
            print(f"{path}: {message}", file=sys.stderr)
    if images:
        models = _load(settings)
        options = _options(args, models)
        for path, description in zip(names, models.describe(images, options, top_k_tags=args.tags)):
            if args.json:
                print(
                    json.dumps(
                        {
                            "photo": str(path),
                            "caption": description.caption,
                            "tags": [{"label": t.label, "score": round(t.score, 4)} for t in description.tags],
                        }
                    )
                )
            else:
                tags = ", ".join(f"{t.label} ({t.score:.2f})" for t in description.tags)
                print(f"{path}: {description.caption}\n  tags: {tags or '-'}")
    return 1 if failures else 0


TRAINING_EXTRA = {"train-captioner": ("matplotlib",), "evaluate": ("pycocoevalcap",)}


def missing_training_extra(command: str) -> str | None:
    """Why `command` cannot run in this install, or None: training's dependencies are the `[train]` extra."""
    missing = [name for name in TRAINING_EXTRA[command] if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"clipchat {command} needs the training extra ({', '.join(missing)} is not installed): "
        "pip install 'clipchat[train]'"
    )


def run_train(args: argparse.Namespace, settings: VisionSettings) -> int:
    if why := missing_training_extra("train-captioner"):
        print(f"clipchat: {why}", file=sys.stderr)
        return 2
    from .catalog.devices import resolve_device, resolve_dtype
    from .catalog.hub import ensure_available
    from .models.encoder import load_clip
    from .models.language_model import load_language_model
    from .training.datasets import read_captions
    from .training.options import TrainingOptions
    from .training.trainer import split_for_validation, train_captioner

    settings = _settings(args, settings)
    model_set = settings.model_set()
    ensure_available(model_set, settings.hub_cache_dir)  # it loads CLIP and GPT-2 without load_models' check
    options = TrainingOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        prefix_length=args.prefix_length,
        mapper=args.mapper,
        finetune_language_model=args.finetune_gpt2,
        normalize_prefix=not args.no_normalize_prefix,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
    )
    data = read_captions(args.captions, args.images)
    split_for_validation([item.image for item in data], options.validation_fraction)  # too few: refused before loading
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device, training=True)
    encoder = load_clip(
        model_set.clip,
        model_set.clip_pretrained,
        device,
        dtype,
        settings.hub_cache_dir,
        allow_random_weights=settings.allow_random_weights,
    )
    lm, tokenizer = load_language_model(model_set.language_model, device, dtype, settings.hub_cache_dir)
    if options.validation_fraction == 0:
        print("Training on every image with no validation split: nothing will say whether it trained long enough.")
    trained = train_captioner(
        encoder,
        lm,
        tokenizer,
        data,
        args.out,
        options,
        resume=args.resume,
        language_model_ref=str(model_set.language_model),
        on_epoch=_print_epoch,
    )
    print(
        f"Saved the captioner to {args.out}. Use it with CLIPCHAT_CAPTIONER=local-dir:{args.out.resolve()}\n"
        f"Loss history: {trained.history_file} (curve: {trained.curve_file})"
    )
    if trained.warning:  # last, below the progress bars, where the operator looks when it ends
        print(f"clipchat: warning: {trained.warning}", file=sys.stderr)
    return 0


def _print_epoch(losses, epochs: int) -> None:
    validation = "-" if losses.validation_loss is None else f"{losses.validation_loss:.4f}"
    print(
        f"epoch {losses.epoch}/{epochs} ({losses.steps} steps): train loss {losses.train_loss:.4f}, "
        f"validation loss {validation}",
        flush=True,
    )


def run_evaluate(args: argparse.Namespace, settings: VisionSettings) -> int:
    if why := missing_training_extra("evaluate"):
        print(f"clipchat: {why}", file=sys.stderr)
        return 2
    from .training.datasets import read_captions
    from .training.evaluation import evaluate

    settings = _settings(args, settings)
    data = read_captions(args.captions, args.images)[: args.limit]
    models = _load(settings)
    report = evaluate(models, data, _options(args, models), image_limits=settings.image_limits())
    if args.report:
        from .training.report import write_contact_sheet

        page = write_contact_sheet(report, args.report, settings.image_limits())
        print(f"Report: {page}", file=sys.stderr if args.json else sys.stdout)  # --json keeps stdout pure JSON
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(
            f"images: {report.images} (skipped {report.skipped})\nBLEU-4: {report.bleu4:.4f}\n"
            f"CIDEr: {report.cider:.4f}\nCLIPScore: {report.clip_score:.4f}"
        )
    return 0


def run_prefetch(args: argparse.Namespace, settings: VisionSettings) -> int:
    from .catalog.hub import hub_cache_folder
    from .pipeline import default_cache_dir

    settings = _settings(args, settings)
    models = _load(settings)
    models.answerer.get()  # loaded on the first open question otherwise, which may come offline
    hub, own = hub_cache_folder(settings.hub_cache_dir), settings.cache_dir or default_cache_dir()
    print(
        f"Model set {models.model_set.name!r} is downloaded and its tag embeddings are cached. "
        "The bot can now start offline (set HF_HUB_OFFLINE=1).\n"
        f"For a machine without internet access, copy {hub} (the Hugging Face downloads) and {own} "
        "(clipchat's cache) to the same folders there, or point CLIPCHAT_HUB_CACHE_DIR and CLIPCHAT_CACHE_DIR "
        "at the copies."
    )
    return 0


def run_models(args: argparse.Namespace, settings: VisionSettings) -> int:
    """Each built-in set (and a configured directory), each of its models, whether it is on disk and how big."""
    from clipchat.errors import ClipchatError

    from .catalog.model_sets import builtin_model_sets, load_model_set

    settings = _settings(args, settings)
    try:
        configured = settings.model_set()  # with the CLIPCHAT_CLIP_MODEL, ... overrides applied
    except ClipchatError as error:
        configured, problem = None, error.detail
    from_directory = Path(settings.models).expanduser().exists()
    sets = [
        configured if configured and not from_directory and name == configured.name else load_model_set(name)
        for name in builtin_model_sets()
    ]
    if configured is not None and from_directory:
        sets.append(configured)
    print(f"Model sets (* = configured by CLIPCHAT_MODELS={settings.models}):")
    for model_set in sets:
        _print_set(model_set, model_set is configured, settings)
    if configured is None:
        print(f"clipchat: the configured set cannot load: {problem}", file=sys.stderr)
        return 2
    return 0


def _print_set(model_set, marked: bool, settings: VisionSettings) -> None:
    from .catalog.hub import INVALID, MISSING, ON_DISK, human_size, presence

    print(f"{'*' if marked else ' '} {model_set.name}: {model_set.description or '(no description)'}")
    found = presence(model_set, settings.hub_cache_dir, settings.allow_random_weights)
    width = max(len(f.reference) for f in found)
    for item in found:
        state = f"{ON_DISK}, {human_size(item.size)}" if item.state == ON_DISK else item.state
        problem = f": {item.detail}" if item.state in (MISSING, INVALID) else ""
        print(f"    {item.role:<15} {item.reference:<{width}}  {state}{problem}")
    sizes = {item.detail: item.size or 0 for item in found if item.state == ON_DISK}  # one entry per place
    print(f"    {'in all':<15} {human_size(sum(sizes.values()))} on disk")
