"""Which questions can be answered without the language model, and what they ask about: the patterns.

A question is tidied first (`tidying.tidy`: case, typos people make, contractions, polite openings such as
"could you tell me"), then tried against one small set of patterns per route, in order. The
rules for each route are written out in the test suite's question bank (routing_bank.jsonl),
whose everyday phrasings measure them. A question no pattern matches goes to the learned fallback
(`intents.route_question`), which leaves it "open", for the language model, unless it is plainly near one
route's example phrasings; so a pattern here should only claim questions its path answers better.

In the other languages the bot speaks (Russian, Spanish, Chinese) only the commonest questions are routed:
the photo as a whole ("Что это?", "¿Qué es esto?", "这是什么？"), its colour ("Какого цвета?") and its text ("Что
написано?", "¿Qué dice?", "写的什么？"). Their subject is
not kept, since CLIP reads English: "какого цвета машина?" is answered with the photo's main colour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class RouteKind(StrEnum):
    """Which path answers a question; an answer's `route` says it too."""

    DESCRIBE = "describe"  # the photo as a whole: its caption and tags
    COLOUR = "colour"
    PRESENCE = "presence"
    IDENTIFY = "identify"
    COUNT = "count"
    MOOD = "mood"
    ALBUM = "album"  # across an album's photos (`album`, `across`)
    READ = "read"  # the text in the photo: transcribed by an answer model that sees it
    OPEN = "open"  # anything else: the language model


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    subject: str | None = None  # "circle", "dog" ... or the category for identify ("animal", "place")

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RouteKind(self.kind))  # a kind no path answers is refused here


PHOTO = r"(?:photo|picture|image|pic|pict|photograph|shot|snap|img)"
THIS = rf"(?:it|this|that|this one|(?:the|this|that) {PHOTO})"  # the photo itself
_DETERMINERS = re.compile(r"^(?:like|a|an|the|any|some|this|that|these|those|its|his|her|their|my)\s+")
_WHERE_IN_PHOTO = re.compile(
    rf"(?:^|\s+)(?:(?:in|on|inside) {THIS}|in here|in there|here|there|at all|inside|present|"
    r"in the (?:background|foreground|distance)|anywhere|somewhere|visible)$"
)
# what is said of the thing rather than the thing: "a cat hiding in there", "the walls, what colour are they painted"
_SAID_OF = re.compile(
    r"\s+(?:hiding|lurking|included|shown|pictured|featured|painted|coloured|dyed|standing|sitting|lying)$"
)
# "one in the field", "it on the left": no thing named, only where it is
_WHERE_ONLY = re.compile(r"^(?:one|it|they|them|any|some)\s+(?:in|on|at|near|by|under|behind|next to)\b.*$")
_OR_NOT = re.compile(r"\s+or (?:not|no|something|anything)$")  # "a bus in this picture or not", "a dog or something"
NO_SUBJECT = {"it", "this", "that", "they", "them", "these", "those", "thing", "one", "stuff", "object"}

COLOURS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "beige",
    "gold",
    "silver",
    "violet",
    "turquoise",
    "navy",
    "maroon",
    "cyan",
    "magenta",
)
CATEGORIES = (
    "animal",
    "object",
    "thing",
    "place",
    "location",
    "shape",
    "food",
    "dish",
    "vehicle",
    "plant",
    "flower",
    "bird",
    "dog",
    "cat",
)
SAME_CATEGORY = {"location": "place", "dish": "food"}
MOODS = (
    "happy",
    "sad",
    "cheerful",
    "gloomy",
    "joyful",
    "depressing",
    "peaceful",
    "calm",
    "scary",
    "romantic",
    "melancholic",
    "cosy",
    "cozy",
    "sombre",
    "somber",
    "uplifting",
    # words for how a photo feels and for little else: "does the scene seem tense?", "is this photo calming?"
    "tense",
    "serene",
    "tranquil",
    "calming",
    "relaxing",
    "lonely",
    "nostalgic",
    "eerie",
    "creepy",
    "spooky",
    "ominous",
    "moody",
    "melancholy",
    "dreamy",
    "hopeful",
    "bleak",
    "cheery",
    "upbeat",
    "festive",
    "sorrowful",
    "joyous",
    "lighthearted",
    "sentimental",
    "mournful",
    "wistful",
    "solemn",
    "soothing",
    "unsettling",
    "haunting",
    "heartwarming",
    "heartbreaking",
)
_CATEGORY = "|".join(CATEGORIES)

_SETTING = rf"(?: {PHOTO}| scene| setting| moment| place| atmosphere)"  # "is it a peaceful setting"
_MOOD = [
    re.compile(
        r"\b(?:mood|feel|feels|feeling|feelings|vibe|vibes|atmosphere|emotion|emotions|emotional|emotionally|"
        r"sentiment|sentiments|aura|ambiance|ambience|(?:overall|general) tone)\b"
    ),
    re.compile(
        rf"^(?:is|was) (?:{THIS}|(?:the|this|that) (?:scene|setting|atmosphere|place)) (?:a |an )?(?:{'|'.join(MOODS)})"
        rf"{_SETTING}?"
        rf"(?: or (?:a |an )?(?:{'|'.join(MOODS)})(?: one|{_SETTING})?)?$"  # "a sad photo or a happy one"
    ),
    # "do you find this image sad", "would you describe the scene as gloomy": a mood said of the photo
    re.compile(
        rf"\b(?:find|consider|call|describe|rate) (?:{THIS}|(?:the|this) (?:scene|setting|atmosphere)) (?:as |to be )?"
        rf"(?:a |an )?(?:{'|'.join(MOODS)})\b"
    ),
    # "is there a sense of calm here": a feeling, not a thing to look for
    re.compile(
        r"\bsense of (?:calm|peace|sadness|joy|happiness|melancholy|loneliness|dread|unease|tension|nostalgia|"
        r"serenity|wonder|excitement|fun|menace|warmth)\b"
    ),
]
_HUE = (
    r"(?:(?:more|mostly|kind of|sort of|a bit|slightly|really|very|more of)\s)?(?:an? )?"
    rf"(?:(?:dark|light|bright|pale|deep|pastel) )?(?:{'|'.join(COLOURS)})(?:ish)?(?: one)?"  # "a red one"
)
_COLOUR = [
    re.compile(  # "what is the colour of the car", "pick out the colour of the kite"
        r"^(?:(?:what|which) (?:is |are )?|(?:identify|determine|find|check|name|(?:pick|make|work|figure) out) )?"
        r"(?:the )?(?:main |dominant |primary |predominant )?colours? (?:of )(?P<subject>.+)$"
    ),
    # "what shade is the sofa", "what colour the car is"
    re.compile(r"^(?:what|which) (?:colour|shade|hue|tint)s? (?:is|are|was|were) (?P<subject>.+)$"),
    re.compile(r"^(?:what|which) (?:colour|shade|hue|tint)s? (?P<subject>.+?) (?:is|are|was|were)$"),
    re.compile(r"^(?:(?:what|which) (?:is |are )?)?(?:the )?(?:main |dominant |primary |predominant )?colours?\b"),
    re.compile(r"^(?:what|which) (?:hues|shades)\b"),  # "which hues appear in the photo"
    # "is the car red?": the colour answer says which colour it is, which answers yes or no too; "is the truck
    # dark blue", "is the jacket more red or orange", "more of a blue or a green"
    re.compile(
        rf"^(?:is|are) (?P<subject>it|this|that|they|(?:the|this|that|these|those) [\w' -]+?) {_HUE}(?: or {_HUE})?"
        rf"(?: here| (?:in|on) {THIS})?$"
    ),
    # "what shade of green is the grass", "what tone of blue is the sky" (not "what tone is it": the mood's)
    re.compile(
        rf"^(?:what|which) (?:shade|hue|tint|tone)s? of (?:{'|'.join(COLOURS)}|colou?r) (?:is|are|was|were) "
        r"(?P<subject>.+)$"
    ),
    # "list the colours in this photo", "describe the colour of the dress"
    re.compile(
        r"^(?:list|describe|name|identify|tell me|give me)(?: me)? (?:all )?(?:the )?(?:main |dominant |different )?"
        r"colou?rs?\b(?: (?:of|on) (?P<subject>.+))?"
    ),
]
# "what does the sign say?", "read the text", "what's written on it", "transcribe the sign": the photo's text.
# Not "is there any text?" (presence) nor "what language is the sign in" (open).
_TEXT = r"(?:text|writing|words|wording|inscription|lettering|letters|label|sign)"
_READ = [
    re.compile(r"^(?:(?:can|could|would|will) you )?(?:please )?(?:read|transcribe)\b"),
    re.compile(
        r"^what (?:does|do|did) (?:it|this|that|they|(?:the|this|that|these|those|its) [\w' -]+?) (?:say|read)$"
    ),
    re.compile(r"^what (?:is|are|was|were) (?:written|printed|typed|spelt|spelled|scribbled)\b"),
    re.compile(rf"^what (?:is|are|was|were) (?:the |this |that )?{_TEXT}s?(?: (?:on|in|of) .+)?$"),
    re.compile(r"^what (?:text|words?|letters) (?:is|are|do you see|can you see)\b"),
    re.compile(r"^what (?:is|are) (?:it|this|that|the \w+) saying$"),
    re.compile(rf"^what (?:is|are) (?:on|in) (?:the|this|that) (?:{_TEXT}|board|poster|plaque|banner|note|screen)$"),
]
_COUNT = [
    re.compile(r"^(?:count )?how many\b ?(?P<subject>.*)$"),
    re.compile(r"^(?:count|tally|add up|enumerate)(?: up)? (?:all )?(?P<subject>.+)$"),
    # "the number of cars", "I need a head count of the kids", "figure out the number of cars"
    re.compile(
        r"^(?:(?:what is|give me|tell me|i need|i would like|i want|get me|(?:figure|work) out) )?(?:the |a )?"
        r"(?:total )?(?:number|count|tally|head count) of (?P<subject>.+)$"
    ),
]
_COUNT_END = re.compile(
    r"\b(?:are|is|were|was|can|could|do|does|did|there|in|on|you|i|we|have|has|here|visible|"
    r"shown|left|would|will|should|might|must|for|parked|standing|sitting|lying|hiding|playing|waiting)\b.*$"
)
# "how many years old", "how many calories": amounts, not things a photo shows one by one
_AMOUNTS = re.compile(
    r"^(?:years?|months?|days?|hours?|minutes?|seconds?|times?|calories|kilos?|kg|pounds?|miles?|km|metres?|"
    r"meters?|feet|inches|percent|degrees?|dollars?|euros?|words?|letters?)\b"
)
_GENERAL = re.compile(r"^how many \w+ (?:does|do) (?:a|an) \w+ have$")  # "how many legs does a spider have"
_PLACE = [
    re.compile(
        rf"^where (?:(?:is|was|are|were|could|might|would|do you think) )?(?:{THIS}|we|here|this place)"
        r"(?: (?:is|was|be|been|located|taken|shot|photographed|from))*$"
    ),
    re.compile(r"^(?:in )?(?:what|which) (?:place|location|country|city) (?:is|was) (?:this|it|that)\b"),
]
_IDENTIFY = [
    re.compile(rf"\b(?:what|which) (?:kind|sort|type|breed|species) of (?P<subject>{_CATEGORY})\b"),
    re.compile(rf"^(?:what|which) (?P<subject>{_CATEGORY})\b"),
    re.compile(
        rf"^what (?:is|are) (?:this|that|the|it) (?!thing\b)(?P<subject>{_CATEGORY})"  # "this thing": describe
        rf"(?: called| in (?:the|this) {PHOTO})?$"
    ),
    re.compile(
        r"^what is the name of (?:this|the|that) (?P<subject>place|location|animal|food|dish|flower|plant|"
        r"bird|shape|vehicle)$"
    ),
    re.compile(rf"^(?:identify|recognise|name) (?:the|this|that) (?P<subject>{_CATEGORY})$"),
]
# a thing named in a few words, not a question's ("what", "how") nor a verb's: "red car", "dog"
_THING = (
    r"(?!(?:the|what|which|how|who|where|why|when|anything|everything|nothing|number|amount|total|colou?rs?|"
    r"shade|kind|type|sort|breed|species|mood|name)\b)[\w'-]+(?: (?!of\b)[\w'-]+){0,2}?"
)
_IN_PHOTO = rf"(?:(?:in|on|inside) {THIS}|in (?:there|here)|in the (?:background|foreground|distance))"
_PRESENCE = [
    re.compile(
        r"^(?:(?:is|are) there|(?:if|whether) there (?:is|are)|(?:do|can|could) you (?:see|spot|find|notice|"
        r"make out|pick out)|"
        r"can i see|any) (?P<subject>.+)$"
    ),
    re.compile(rf"^does (?:it|this|the {PHOTO}|this {PHOTO}) (?:show|have|contain|include|feature) (?P<subject>.+)$"),
    re.compile(rf"^(?:is|are) (?:it|this|that) (?:a |an )?(?:{PHOTO} of )?(?P<subject>(?:a|an|some) .+)$"),
    re.compile(rf"^(?:is|are) (?:it|this|that) (?:a |an )?{PHOTO} of (?P<subject>.+)$"),
    re.compile(r"^are (?:these|those|they) (?P<subject>\w+s)$"),  # "are these apples?"
    # "is the sun in the picture?", "are cats in the photo", "dog in there?", "trees in the background or not?"
    re.compile(
        rf"^(?:(?:is|are) (?:(?:the|a|an|any|some) )?|(?:a|an|any|some) )?(?P<subject>{_THING}) {_IN_PHOTO}(?: or not)?$"
    ),
]
_DESCRIBE = [
    re.compile(rf"^what (?:is|are) (?:it|this|that|these|those)(?: thing| one)?(?: (?:a )?{PHOTO}(?: of)?| of)?$"),
    re.compile(r"^what (?:this|that|it) is$"),
    re.compile(rf"^what (?:is|are) (?:it|this|that|these|those)(?: thing| things| one)? (?:in|on) {THIS}$"),
    re.compile(rf"^what (?:is|are) (?:in|on) (?:it|{THIS})$"),
    re.compile(
        rf"^what (?:is|are) (?:shown|pictured|depicted|happening|going on|visible|there)"
        rf"(?: here| (?:in|on) {THIS})?$"
    ),
    re.compile(rf"^what (?:is|are) (?:the|this) {PHOTO} (?:about|of|showing)$"),
    re.compile(  # "what does the photograph illustrate"
        rf"^what (?:does|do) {THIS} (?:show|depict|contain|have|illustrate|present|represent|portray|capture|"
        r"feature|display|include)$"
    ),
    re.compile(
        rf"^what (?:am i|are we|are you|is it that (?:i am|we are|you are)) (?:looking at|seeing)"
        rf"(?: here| (?:in|on) {THIS})?$"
    ),
    re.compile(
        r"^(?:what(?: things| objects)?|everything|all) (?:do |can |could )?you (?:can )?"
        rf"(?:see|make out|spot|notice|recognise|pick out|find)"
        rf"(?: here| (?:in|on) {THIS})?$"
    ),
    re.compile(rf"^what (?:do|have) (?:we|i|you) (?:have|got)(?: here| (?:in|on) {THIS})?$"),
    re.compile(rf"^what (?:is|are) (?:the )?(?:subject(?: matter)?|topic|theme|content|contents) of {THIS}$"),
    re.compile(rf"^what (?:is|are) (?:the|this|that) {PHOTO}(?: of)?$"),  # "whats the pic"
    re.compile(
        rf"^how (?:would|could|do|can|should) (?:you|i|we|one) (?:describe|caption|sum up|summari[sz]e) {THIS}$"
    ),
    re.compile(rf"^sum (?:up {THIS}|{THIS} up)$"),
    re.compile(rf"^put {THIS} (?:into|in) words$"),
    re.compile(rf"^what (?:is|are) (?:the|this|that) scene(?: here| (?:in|on) {THIS})?$"),
    re.compile(rf"^what (?:is|are) the main (?:subject|thing|object|focus)(?: here| (?:in|of|on) {THIS})?$"),
    re.compile(rf"^(?:walk|talk|run|take) me through (?:{THIS}|what is (?:in|on|happening in) {THIS}|what you see)$"),
    re.compile(
        rf"^(?:describe|explain|caption|identify|summari[sz]e|characteri[sz]e|narrate|outline)(?: (?:me )?(?:{THIS}|what you see|"
        rf"what is (?:in|on) {THIS}|everything))?$"
    ),
    # "give me a caption", "provide a description of the image", "can I get a short summary", "need a caption"
    re.compile(
        r"^(?:give|write|provide|generate|create|produce|make|(?:i )?need|i want|i would like|"
        r"(?:can|could|may) (?:i|we) (?:get|have))(?: me| us)? (?:a |the |an )?(?:(?:short|quick|brief|full|"
        rf"detailed|good) )?(?:description|caption|summary)(?: (?:for|of) {THIS})?$"
    ),
    re.compile(rf"^what can you (?:tell me|say) about {THIS}$"),
    re.compile(
        rf"^tell me (?:more |everything |all )?(?:about {THIS}|(?:that )?you (?:can )?(?:see|notice|spot)"
        rf"(?: (?:in|on) {THIS})?)$"
    ),
]


# Russian, Spanish and Chinese, after `tidy` and `_plain` (lower case, ё as е, no Spanish accents or politeness).
_RU_PHOTO = r"(?:фото|фотк[аеу]|фотографи[ияю]|картинк[аеу]|изображени[еия]|снимк?[еау]?|кадр[еа]?)"
_ES_PHOTO = r"(?:foto|imagen|fotografia|dibujo)"
_ZH_PHOTO = r"(?:图片|照片|图像|图|画面|相片|这张图|这张照片|这张图片|这幅图|这幅画)"
_DESCRIBE_ELSEWHERE = [
    re.compile(r"^(?:что|че|чё|што) (?:это|тут|здесь|там|это тут)(?: такое| за (?:штука|вещь|" + _RU_PHOTO + r"))?$"),
    re.compile(r"^(?:а )?это что(?: такое)?$"),
    re.compile(rf"^что (?:(?:есть|видно|изображено|нарисовано|показано) )?(?:на|в) (?:этом |этой )?{_RU_PHOTO}$"),
    re.compile(rf"^что (?:тут |здесь )?(?:изображено|нарисовано|показано)(?: (?:на|в) (?:этом |этой )?{_RU_PHOTO})?$"),
    re.compile(rf"^что ты (?:тут |здесь )?видишь(?: (?:на|в) (?:этом |этой )?{_RU_PHOTO})?$"),
    re.compile(
        rf"^(?:(?:можешь|можете|могли бы) )?(?:опиши|опишите|описать|расскажи|расскажите|рассказать)"
        rf"(?: (?:это|его|ее|мне|что видишь|"
        rf"(?:о |об |про )?(?:этом |эту |это |этой )?{_RU_PHOTO}))*$"
    ),
    re.compile(r"^(?:que|qué) (?:es|son) (?:esto|eso|esta|este|aquello|estas|estos)(?: de aqui)?$"),
    re.compile(r"^(?:que|qué) es$"),
    re.compile(
        rf"^que (?:hay|ves|se ve|aparece|sale|puedes ver|muestra|representa)"
        rf"(?: aqui| (?:en|dentro de) (?:la|esta|esa|mi) {_ES_PHOTO}| (?:la|esta) {_ES_PHOTO})?$"
    ),
    re.compile(
        rf"^(?:(?:puedes|podrias|puede|podria) )?(?:describe|describa|describeme|describela|describelo|"
        rf"describemela|describemelo|describirme|"
        rf"describir)(?: (?:esto|lo que ves|(?:la|esta|esa|mi) {_ES_PHOTO}))?$"
    ),
    re.compile(
        r"^(?:这|那|它|这个|那个|这张|这里|这儿)(?:是|是个|是一个|画的是|拍的是)?(?:什么|啥)(?:东西)?[呢啊呀]?$"
    ),
    re.compile(r"^(?:是)?(?:什么|啥)$"),
    re.compile(
        rf"^(?:这张|这个|这幅)?{_ZH_PHOTO}(?:里|里面|上|中)?(?:有|是|拍的是|画的是)(?:什么|啥)(?:东西)?[呢啊呀]?$"
    ),
    re.compile(rf"^(?:请|请你|帮我)?(?:描述|描写|形容|介绍|说说|讲讲)(?:一下)?(?:这张|这个|这幅)?{_ZH_PHOTO}?[吧呢]?$"),
    re.compile(r"^你(?:看到|看见|能看到)了?(?:什么|啥)[呢啊呀]?$"),
]
_COLOUR_ELSEWHERE = [
    re.compile(r"^(?:а )?(?:какого|какой|какие|каких|каким) (?:\w+ )?цвет(?:а|ов|ом)?\b"),
    re.compile(r"\bэто (?:какого|какой) цвет"),
    re.compile(r"^(?:de )?(?:que|cual|cuales) (?:es el |son los )?colou?r(?:es)?\b"),
    re.compile(r"(?:什么|啥|哪种|哪个|哪些)(?:颜色|色)|颜色是(?:什么|啥)"),
]
_READ_ELSEWHERE = [
    re.compile(r"^(?:что|че|чё) (?:тут |здесь |там |на (?:нем|ней|нём) )?(?:написано|пишут|сказано)\b"),
    re.compile(r"^(?:прочитай|прочти|прочитайте|прочтите|перепиши)\b"),
    re.compile(r"^(?:que|qué) (?:dice|pone|esta escrito|hay escrito)\b"),
    re.compile(r"^(?:lee|leeme|leer|transcribe|transcribir)\b"),
    re.compile(r"写(?:的|着|了)?(?:是)?(?:什么|啥)|(?:读|念)(?:一下|出来)|上面(?:的)?(?:字|文字)"),
]
_POLITE_ELSEWHERE = re.compile(r"(?:^|\s)(?:пожалуйста|плиз|por favor|porfa)(?=\s|$)|^(?:请问|请)(?=.)")


# a colour to choose or to make, not one in the photo: "what colour should I paint the walls", "what colour do you
# like", "can you change the colour of the car"
ADVICE = re.compile(
    r"\b(?:should|shall|goe?s? (?:well )?with|match(?:es)?|favou?rite|(?:do|would) you (?:like|prefer|love)|"
    r"change|edit|recolou?r)\b"
)
_HOW_ARE_YOU = re.compile(r"^how (?:are|do) you (?:feel|feeling)(?: today| now)?$")  # the bot's feelings
# what is said of the colours rather than a thing: "which colour is most common", "which colours are used here";
# only those words and fillers, so that "the used car" stays a thing
_MOST = frozenset(
    {"most", "more", "main", "dominant", "common", "prominent", "strongest", "used", "present", "seen", "showing"}
    | {"appearing", "there"}
)
_MOST_FILLER = frozenset(
    {"the", "a", "one", "ones", "colour", "colours", "color", "colors", "in", "here", "of", "on", "this", "photo"}
    | {"picture", "image", "overall"}
)


def _of_the_colours(thing: str) -> bool:
    """Whether a colour question's `thing` says which colours rather than naming a thing in the photo."""
    words = set(thing.split())
    return bool(_MOST & words) and words <= _MOST | _MOST_FILLER


_COLOUR_OF = re.compile(r"^colours? of (?P<subject>.+)$")
_NO_THING = re.compile(r"(?:chance|way|reason|need|point|possibility|difference|problem|rule|time)\b")
_CHOICE = re.compile(r"\b(?:or|and) (?:a|an|the|some|any)\b|\bor\b")
_ASKING = re.compile(r"\b(?:what|which|how|where|who|whether|if|why|when)\b")


def _plain(text: str) -> str:
    """`tidy`'s text the way the patterns in other languages expect it."""
    text = text.replace("ё", "е").translate(str.maketrans("áéíóúü", "aeiouu")).lstrip("¿¡ ")
    text = _POLITE_ELSEWHERE.sub(" ", re.sub(r"[,，、]", " ", text))  # "Опиши, пожалуйста, это фото"
    return " ".join(text.split()).rstrip("吗嘛")


def pattern_route(text: str) -> Route | None:
    """The route the patterns give `tidy`'s text, or None when no pattern matches it."""
    plain = _plain(text)
    if any(pattern.search(plain) for pattern in _COLOUR_ELSEWHERE):
        return Route(RouteKind.COLOUR)
    if any(pattern.search(plain) for pattern in _DESCRIBE_ELSEWHERE):
        return Route(RouteKind.DESCRIBE)
    if any(pattern.search(plain) for pattern in _READ_ELSEWHERE):
        return Route(RouteKind.READ)
    if any(pattern.search(text) for pattern in _MOOD):
        return Route(RouteKind.OPEN if _HOW_ARE_YOU.match(text) else RouteKind.MOOD)
    for pattern in _COLOUR:
        if match := pattern.search(text):
            if ADVICE.search(text):
                return Route(RouteKind.OPEN)
            thing = _subject(match)  # "which colour is most common": which colour, of no thing
            return Route(RouteKind.COLOUR, None if thing and _of_the_colours(thing) else thing)
    for pattern in _COUNT:
        if match := pattern.search(text):
            named = _COUNT_END.sub("", match.group("subject")).strip()
            if _AMOUNTS.match(named) or _GENERAL.match(text):
                return Route(RouteKind.OPEN)
            return Route(RouteKind.COUNT, _subject(named))
    if any(pattern.search(text) for pattern in _READ):
        return Route(RouteKind.READ)
    if any(pattern.search(text) for pattern in _PLACE):
        return Route(RouteKind.IDENTIFY, "place")
    for pattern in _IDENTIFY:
        if match := pattern.search(text):
            category = match.group("subject")
            return Route(RouteKind.IDENTIFY, SAME_CATEGORY.get(category, category))
    for pattern in _PRESENCE:
        if match := pattern.search(text):
            thing = _subject(match)
            # "anything red?" names no thing to look for; "a real photo?" is about the photo, not in it
            # "something like a bridge", "anything that looks like a cat"
            thing = thing and _subject(re.sub(r"^(?:anything|something) (?:that looks? )?like ", "", thing))
            thing = thing and _subject(re.sub(r"^chance (?:that )?there (?:is|are) ", "", thing))  # "any chance"
            if thing and _ASKING.search(thing):  # "any idea what this is" names no thing: it asks something else
                continue
            if thing and (asked := _COLOUR_OF.match(thing)):  # "can you make out the colour of the sign"
                return Route(RouteKind.COLOUR, _subject(asked["subject"]))
            if thing and _NO_THING.match(thing):  # "is there a chance it rains", "a way to fix this"
                return Route(RouteKind.OPEN)
            if thing and _CHOICE.search(thing):  # "is that a dog or a cat?": a choice, for the language model
                return Route(RouteKind.OPEN)
            if thing and not re.match(r"(?:anything|something)\b", thing) and not re.search(rf"\b{PHOTO}$", thing):
                return Route(RouteKind.PRESENCE, thing)
            return Route(RouteKind.OPEN)
    if any(pattern.search(text) for pattern in _DESCRIBE):
        return Route(RouteKind.DESCRIBE)
    return None


def _subject(found: re.Match[str] | str) -> str | None:
    """The thing a question names, without articles or "in the photo"; None for "it", "this", "that thing"."""
    text = found if isinstance(found, str) else (found.groupdict().get("subject") or "")
    previous = None
    while text != previous:
        previous = text
        text = _WHERE_IN_PHOTO.sub("", _DETERMINERS.sub("", _OR_NOT.sub("", text.strip()))).strip()
        text = _WHERE_ONLY.sub("", _SAID_OF.sub("", text)).strip()
    return None if not text or text in NO_SUBJECT else text
