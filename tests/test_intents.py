"""Routing's learned fallback: paraphrases nobody tuned on reach the path that answers them, and the bank holds.

tests/data/routing_paraphrases.jsonl was written and committed before the fallback existed, from templates the
patterns were not written from (tests/data/make_routing_paraphrases.py); the fallback's prototypes and thresholds
were tuned on tests/data/routing_tuning.jsonl, tests/data/routing_dev_paraphrases.jsonl (written for issue 30
before the fallback was improved, without reading the paraphrase set's rows), tests/data/routing_dev5.jsonl (round 5,
likewise) and the bank's dev half only. Its figures are measured with the
world's CLIP, as the bot routes: the fallback consults CLIP's text tower only where it tells the prototypes'
routes apart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from clipchat.facts import PhotoFacts, Tag
from dialogue import Conversation, Route, RouteKind, answer, route_question
from dialogue.intents import clip_view, nearest_kind
from dialogue.prototypes import PROTOTYPES
from dialogue.tidying import tidy

DATA = Path(__file__).parent / "data"
PARAPHRASES_GOOD_ENOUGH = 0.935  # see the note at the assertion
HARD_GOOD_ENOUGH = 0.9  # routing_hard_dev.jsonl: 0.823 before the classifier (its header), 0.908 with it
HARD4_GOOD_ENOUGH = 0.93  # routing_hard_dev4.jsonl: 0.792 untuned (its header), 0.953 with round 4's subjects
TUNING_GOOD_ENOUGH = 0.9
DEVELOPMENT_GOOD_ENOUGH = 0.95  # measured 0.981 (633/645) when the set was last tuned on (round 2)
ROUND_5_GOOD_ENOUGH = 0.95  # routing_dev5.jsonl: 0.837, 0.867, 0.757 untuned (its header), 0.983 (404/411) tuned on
HARD5_GOOD_ENOUGH = 0.85  # routing_hard_dev5.jsonl: 0.873 (69/79) untuned, never trained on


def rows(name: str) -> list[dict]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


def rate_by_kind(questions: list[dict], encoder=None) -> tuple[float, dict[str, float], list[str]]:
    by_kind: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for row in questions:
        route = route_question(row["question"], encoder)
        right = route.kind == row["kind"] and ("subject" not in row or route.subject == row["subject"])
        by_kind[row["kind"]].append(right)
        if not right:
            misses.append(
                f"{row['question']!r}: {route.kind}/{route.subject}, wanted {row['kind']}/{row.get('subject')}"
            )
    rate = sum(map(sum, by_kind.values())) / len(questions)
    return rate, {kind: sum(found) / len(found) for kind, found in sorted(by_kind.items())}, misses


def test_paraphrases_nobody_tuned_on_reach_the_path_that_can_answer_them(world_models, figure) -> None:
    paraphrases = rows("routing_paraphrases.jsonl")
    # ALBUM is asked only after an album (`dialogue.album`), before routing: no single question routes there
    assert {row["kind"] for row in paraphrases} == set(RouteKind) - {RouteKind.ALBUM} and len(paraphrases) >= 150
    rate, by_kind, misses = rate_by_kind(paraphrases, world_models.encoder)
    figure(f"routing right, paraphrases nobody tuned on, world CLIP ({len(paraphrases)} questions)", rate)
    for kind, kind_rate in by_kind.items():
        figure(f"routing right, paraphrases, {kind}", kind_rate)
    print(f"paraphrases: {rate:.3f} right; misses:", *misses, sep="\n  ")
    # The issue asks for 0.95. The patterns alone route 0.379; with the fallback it was 0.810 on the world, where
    # CLIP's text tower knows only shape captions and the frame space alone decides. Tuned on the development
    # paraphrases only (issue 30's second round) it is measured at 0.851 (148/174), as a fresh dev batch had
    # predicted (0.847). Round 2 (chat forms, "X in the pic?", requests after lead-ins, typos) measured 0.868
    # (151/174); its untuned fresh batches scored 0.898 before and 0.952 after, so they overrate this set's
    # harder templates. Round 3 added a learned classifier (trained on the dev sets, never on this one) where the
    # prototypes leave a question open: 0.908 (158/174), wrong grounded routes 8 -> 9 of 174.
    # Round 4 (subjects: a clause naming the thing, chat typos, "head count of", amounts that are no things)
    # measured 0.937 (163/174), count-only; 1 wrong grounded route and 2 wrong subjects of 174.
    # Round 5 (describe, mood and colour in other words, lead-ins, asides; routing_dev5.jsonl 0.837 -> 0.983, its
    # hard batch 0.873 untuned) left it at 0.937 (describe 26/30, mood 18/20, colour 22/25): the misses are in
    # forms none of round 5's 480 questions had.
    # This bound holds today's figure so that it cannot slip back; it is not the target.
    assert rate >= PARAPHRASES_GOOD_ENOUGH, "\n".join(misses)
    assert by_kind["open"] >= 0.95, "questions for the language model must stay open"


def test_the_question_bank_is_routed_as_before_with_the_world_s_clip(world_models, figure) -> None:
    """The fallback only sees what no pattern matched, and leaves the bank's open questions open."""
    from tests.test_routing import GOOD_ENOUGH, bank

    for split in ("dev", "heldout"):
        questions = [{**row, "kind": row["route"]} for row in bank() if row["split"] == split]
        rate, _, misses = rate_by_kind(questions, world_models.encoder)
        figure(f"routing right, {split} half of the question bank, world CLIP ({len(questions)} questions)", rate)
        assert rate >= GOOD_ENOUGH[split], "\n".join(misses)


def test_the_phrasings_the_fallback_was_tuned_on_are_routed(figure) -> None:
    tuning = rows("routing_tuning.jsonl")
    rate, _, misses = rate_by_kind(tuning)
    figure(f"routing right, the fallback's tuning questions ({len(tuning)})", rate)
    assert rate >= TUNING_GOOD_ENOUGH, "\n".join(misses)


def test_the_development_paraphrases_are_routed(figure) -> None:
    """routing_dev_paraphrases.jsonl: written (before the router was improved) to be tuned on, so that the
    committed paraphrase set can stay held out."""
    development = rows("routing_dev_paraphrases.jsonl")
    rate, by_kind, misses = rate_by_kind(development)
    figure(f"routing right, the fallback's development paraphrases ({len(development)})", rate)
    assert rate >= DEVELOPMENT_GOOD_ENOUGH, "\n".join(misses)
    assert by_kind["open"] >= 0.95, "questions for the language model must stay open"


def test_the_round_5_batch_is_routed(figure) -> None:
    """routing_dev5.jsonl (issue 30, round 5): describe, mood and colour in forms the earlier batches lacked, and
    open questions that share their words; scored once untuned (0.837), then tuned on."""
    batch = rows("routing_dev5.jsonl")
    rate, by_kind, misses = rate_by_kind(batch)
    figure(f"routing right, the round-5 paraphrases ({len(batch)})", rate)
    assert rate >= ROUND_5_GOOD_ENOUGH, "\n".join(misses)
    assert min(by_kind[kind] for kind in ("describe", "mood", "colour")) >= 0.95, "\n".join(misses)


def test_the_round_5_hard_batch_is_routed(figure) -> None:
    """routing_hard_dev5.jsonl (issue 30, round 5, batch B): chat forms around describe, mood and colour written
    after round 5's tuning and scored once untuned (0.873); the classifier never trains on it."""
    hard = rows("routing_hard_dev5.jsonl")
    rate, _, misses = rate_by_kind(hard)
    figure(f"routing right, the round-5 hard paraphrases ({len(hard)})", rate)
    assert rate >= HARD5_GOOD_ENOUGH, "\n".join(misses)


def test_the_hard_development_batch_is_routed(figure) -> None:
    """routing_hard_dev.jsonl (issue 30, round 3): the held-out set's forms, which the classifier never trains on."""
    hard = rows("routing_hard_dev.jsonl")
    rate, by_kind, misses = rate_by_kind(hard)
    figure(f"routing right, the hard development paraphrases ({len(hard)})", rate)
    assert rate >= HARD_GOOD_ENOUGH, "\n".join(misses)
    assert by_kind["open"] >= 0.95, "questions for the language model must stay open"


def test_the_round_4_batch_is_routed_with_its_subjects(figure) -> None:
    """routing_hard_dev4.jsonl (issue 30, round 4): grounded questions whose thing is hidden by the held-out set's
    forms; scored once untuned (0.792), then tuned on."""
    hard = rows("routing_hard_dev4.jsonl")
    rate, _, misses = rate_by_kind(hard)
    figure(f"routing right, the round-4 subject paraphrases ({len(hard)})", rate)
    assert rate >= HARD4_GOOD_ENOUGH, "\n".join(misses)


@pytest.mark.parametrize(
    ("question", "route"),
    [
        ("windows, how many does the barn have?", Route(RouteKind.COUNT, "windows")),
        ("how mny cups r on the table", Route(RouteKind.COUNT, "cups")),
        ("a tractor, is there one in the field?", Route(RouteKind.PRESENCE, "tractor")),
        ("the shed, what colour is it painted?", Route(RouteKind.COLOUR, "shed")),
        ("the animal on the right, what is it?", Route(RouteKind.IDENTIFY, "animal")),
        ("how many years old is that car?", Route(RouteKind.OPEN)),
        ("is there a chance of snow?", Route(RouteKind.OPEN)),
    ],
)
def test_the_thing_is_found_where_the_question_does_not_name_it(question: str, route: Route) -> None:
    """Round 4: the thing in a clause of its own, chat typos, what is said of the thing; amounts are not things."""
    assert route_question(question) == route


def test_the_classifier_trains_on_the_tuning_sets_copied_into_the_package() -> None:
    """dialogue/data/intents.jsonl is what tests/data/make_intents_data.py writes (the product reads no tests/),
    and holds no question of a set that measures routing."""
    from tests.data.make_intents_data import HEADER, TARGET, labelled

    shipped = TARGET.read_text(encoding="utf-8")
    assert shipped == HEADER + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in labelled())
    trained = {tidy(row["question"]) for row in labelled()}
    measured = {
        tidy(row["question"])
        for name in (
            "routing_paraphrases.jsonl",
            "routing_hard_dev.jsonl",
            "routing_hard_dev4.jsonl",
            "routing_hard_dev5.jsonl",
        )
        for row in rows(name)
    }
    # the bank's held-out half is routed by the patterns, tuned on its dev half, whose short questions recur there
    # tidied ("describe the photo"); the classifier sees only what the patterns leave
    assert trained and not trained & measured


@pytest.mark.parametrize(
    ("question", "route"),
    [
        ("The jacket, what shade would you call it?", Route(RouteKind.COLOUR, "jacket")),
        ("a boat, is there one?", Route(RouteKind.PRESENCE, "boat")),
        ("the dog, what breed would it be?", Route(RouteKind.IDENTIFY, "dog")),
        ("Can you make sense of this image for me?", Route(RouteKind.DESCRIBE)),
    ],
)
def test_the_classifier_takes_what_the_prototypes_leave_open(question: str, route: Route) -> None:
    """Round 3: the subject first, other verbs; the prototypes' frames alone leave these open."""
    assert nearest_kind(tidy(question))[0] is RouteKind.OPEN
    assert route_question(question) == route


def as_typed(question: str) -> str:
    """`question` in lower case, one space, without end punctuation: a copy, not a paraphrase, matches."""
    return " ".join(question.lower().replace("\u2019", "'").split()).rstrip("?!. ")


def test_no_paraphrase_is_a_prototype_or_a_tuning_question() -> None:
    """The set that measures the fallback is no part of what it was built from."""
    paraphrases = [row["question"] for row in rows("routing_paraphrases.jsonl")]
    tuned_on = {
        tidy(row["question"])
        for name in ("routing_tuning.jsonl", "routing_dev_paraphrases.jsonl", "routing_dev5.jsonl")
        for row in rows(name)
    }
    assert not {tidy(question) for question in paraphrases} & tuned_on
    # the prototypes as written: `tidy` spells chat out ("whatcha see": "what do you see"), so a paraphrase in
    # slang may tidy to a prototype's plain words without being one
    as_written = {as_typed(question) for question in paraphrases}
    assert not as_written & {as_typed(phrase) for phrases in PROTOTYPES.values() for phrase in phrases}
    assert set(PROTOTYPES) == set(RouteKind) - {RouteKind.ALBUM}


@pytest.mark.parametrize(
    ("question", "kind", "subject"),
    [
        ("Would you be so kind as to tell me what this is?", "describe", None),
        ("I'm keen to know what you are seeing", "describe", None),
        ("which hue is the balloon", "colour", "balloon"),
        ("what colour do you think the bag is", "colour", "bag"),
        ("could you tally the dogs", "count", "dogs"),
        ("count the number of dogs", "count", "dogs"),
        ("do you spot any kites?", "presence", "kites"),
        ("is there by any chance a cat", "presence", "cat"),
        ("what make of vehicle would this be", "identify", "vehicle"),
        ("does it come across as gloomy?", "mood", None),
        ("what is the dog chewing", "open", None),
        ("can the bird fly?", "open", None),
        ("what is the name of the dog?", "open", None),  # a dog's name: the language model, not a category
        ("how would you title this?", "open", None),
        ("I'm trying to settle a bet, what colour is the jacket?", "colour", "jacket"),  # the asking clause's
        ("the apples, how many are there?", "count", "apples"),  # or, where it names none, another clause's
        ("sorry to bother you, what is this thing?", "describe", None),
        ("so um briefly describe the scene", "describe", None),  # fillers say nothing
        ("is there maybe a cat?", "presence", "cat"),
        ("I wonder which city this is", "identify", "place"),  # an indirect question read as a direct one
        ("tell me what the sign says", "read", None),
        ("could you describe the picture in a few words", "describe", None),
        ("is it a sad photo or a happy one", "mood", None),
        ("is there something like a bridge", "presence", "bridge"),
        ("what kinda dog is that", "identify", "dog"),
        ("I just took this, what do you make of it?", "describe", None),
        ("how do you work?", "open", None),
        ("any clue what this could be?", "describe", None),  # "any clue" is no thing to look for
        ("what breed would you say the dog is", "identify", "dog"),
        ("any cats in here?", "presence", "cats"),
        # issue 30, round 2: emoji, expletives, chat spellings, "X in the pic?", a choice between two things
        ("what on earth is this 🤔", "describe", None),
        ("walk me through this picture", "describe", None),
        ("how would you describe this photo?", "describe", None),
        ("cat in the pic?", "presence", "cat"),
        ("is the sun in the picture?", "presence", "sun"),
        ("Is there a bus in this picture or not?", "presence", "bus"),
        ("trees in the background?", "presence", "trees"),
        ("do u c a dog", "presence", "dog"),
        ("is that a dog or a cat", "open", None),
        ("number of people in the photo please", "count", "people"),
        ("what's on the sign?", "read", None),
        ("tell me a story about this picture", "open", None),
        ("I'd be grateful if you could describe the picture", "describe", None),  # a request after a lead-in
        ("would you mind counting the birds", "count", "birds"),
        ("descibe the pictre", "describe", None),  # typos of the patterns' words
        ("whta is tihs", "describe", None),
        ("sum this picture up", "describe", None),
        ("what's the main subject", "describe", None),  # not the main colour
        # issue 30, round 5: how a photo feels in words the patterns lacked, colours said with a qualifier,
        # requests for a description in other verbs, colour advice
        ("does the scene seem tense?", "mood", None),
        ("Is there a sense of calm here?", "mood", None),  # a feeling, not a thing to look for
        ("Is it a peaceful setting?", "mood", None),
        ("is the truck dark blue", "colour", "truck"),
        ("is the jacket more red or orange", "colour", "jacket"),
        ("what tone of blue is the sky", "colour", "sky"),
        ("list the colours in this photo", "colour", None),
        ("which colour is most common in the image", "colour", None),
        ("I'm curious about the colour of the car", "colour", "car"),
        ("what colour should I paint the walls", "open", None),  # advice, not a colour in the photo
        ("Provide a description of the image", "describe", None),
        ("any chance you could describe the photo", "describe", None),
        ("Can I get a description?", "describe", None),
        ("is the van white in this picture", "colour", "van"),  # not "van white", present or not
        ("which colour do you prefer?", "open", None),  # a colour to choose or to make, not one in the photo
        ("could you change the colour of the sky", "open", None),
        ("how are you feeling today?", "open", None),  # the bot's feelings, not the photo's
        # round 5, batch C: lead-ins, indirect yes/no questions, other verbs
        ("I was hoping you could tell me whether the scene is gloomy", "mood", None),
        ("do you find this picture gloomy", "mood", None),
        ("can you make out the colour of the flag", "colour", "flag"),
        ("figure out the colour of the bike", "colour", "bike"),
        ("the van, which shade would you say it is?", "colour", "van"),
        ("put this photo into words for me", "describe", None),
        ("narrate this picture", "describe", None),
        # round 5, batch D: other words for the same asks
        ("what is the subject matter of this photograph", "describe", None),
        ("what does the photo present?", "describe", None),
        ("what things can you find in the image", "describe", None),
        ("what's the aura of this photo", "mood", None),
        ("is the scene sorrowful?", "mood", None),
        ("is the photo joyous", "mood", None),
        ("which hues can you see", "colour", None),
        ("which colours are used in the photo", "colour", None),  # "used" is no thing
        ("what colour is the used car", "colour", "used car"),  # a thing, whatever word it shares with those
    ],
)
def test_a_question_no_pattern_matches_is_routed_by_its_nearest_phrasings(
    question: str, kind: str, subject: str | None
) -> None:
    route = route_question(question)
    assert (route.kind, route.subject) == (kind, subject)


@pytest.mark.parametrize(
    ("question", "route"),
    [
        ("what's in this picture", Route(RouteKind.DESCRIBE)),
        ("is this picture sad", Route(RouteKind.MOOD)),
        ("what colour is the car", Route(RouteKind.COLOUR, "car")),
        ("is the dress red", Route(RouteKind.COLOUR, "dress")),
    ],
)
def test_a_greeting_or_an_aside_does_not_change_the_route(question: str, route: Route) -> None:
    """Round 5: words before or after the question that ask nothing ("hey there!", "if you don't mind me asking",
    "lol", ":)") leave its route and its thing as they were."""
    openers = ("", "hey there! ", "yo ", "random question but ", "in your opinion, ", "just wondering, ")
    asides = ("", " if you don't mind me asking", " when you have a sec", " if that's ok", " real quick lol", " :)")
    wrong = [
        f"{opener}{question}{aside!r}: {found}"
        for opener in openers
        for aside in asides
        if (found := route_question(opener + question + aside)) != route
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "remark",
    [
        "It is red.",
        "What a sunset!",
        "hello all",
        "Are you sure?",
        "red circle",
        "please remember this",
        "anything else to say?",  # asks the bot to go on, not to read the photo's text
    ],
)
def test_a_remark_is_no_question_for_the_fallback(remark: str) -> None:
    """Chat that asks nothing stays with the language model, however many words it shares with a question."""
    assert route_question(remark).kind is RouteKind.OPEN


def test_a_route_that_needs_a_thing_is_left_open_when_none_is_named() -> None:
    assert route_question("do you happen to spot it?").kind is RouteKind.OPEN  # presence of nothing named


def test_a_polite_paraphrase_of_what_is_this_gets_the_caption(world_models, heldout) -> None:
    """Issue 30: "would you mind telling me what I'm looking at?" got "I'm not sure how to answer that"."""
    held = heldout[0]
    vector = world_models.encoder.embed_images([held.image])[0].cpu().numpy()
    facts = PhotoFacts(held.scene.caption, (Tag(held.scene.shape, 0.8),), vector, world_models.encoder.identity)
    reply = answer(world_models, Conversation(facts), "Would you be so kind as to tell me what I'm looking at, please?")
    assert reply.route is RouteKind.DESCRIBE and held.scene.caption.rstrip(".").lower() in reply.text.lower()


def test_clip_s_view_of_the_prototypes_is_built_once_per_model(world_models) -> None:
    encoder = world_models.encoder
    calls = []

    class Counting:
        identity = encoder.identity + "#counted"
        device = encoder.device
        logit_scale = encoder.logit_scale

        def embed_texts(self, texts):
            calls.append(len(texts))
            return encoder.embed_texts(texts)

    counting = Counting()
    first = clip_view(counting)
    route_question("what hue would you say the kite is", counting)
    assert clip_view(counting) is first and calls[0] == sum(map(len, PROTOTYPES.values()))
    assert 0.0 <= first.separates <= 1.0
