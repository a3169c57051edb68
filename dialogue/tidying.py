"""A question as the patterns read it: lower case, one space, chat spellings and contractions spelt out, polite
framing, greetings, thanks and emoticons dropped ("hey there! whats the colour of the car pls :)" -> "what is the
colour of the car"). Kept apart from the patterns (`routing`) because these are about how people type, not about
what they ask.
"""

from __future__ import annotations

import re

# Words as people type them in chat, mapped to the words the patterns expect.
_WORDS = {
    "wat": "what",
    "wht": "what",
    "waht": "what",
    "whta": "what",
    "whats": "what is",
    "wats": "what is",
    "what's": "what is",
    "what're": "what are",
    "wheres": "where is",
    "kinda": "kind of",
    "sorta": "sort of",
    "where's": "where is",
    "hw": "how",
    "manny": "many",
    "mny": "many",
    "mant": "many",
    "knd": "kind",
    "cnt": "count",
    "cuont": "count",
    "cn": "can",
    "headcount": "head count",
    "u": "you",
    "r": "are",
    "ur": "your",
    "ther": "there",
    "theres": "there is",
    "there's": "there is",
    "dat": "that",
    "dis": "this",
    "ths": "this",
    "thats": "that is",
    "that's": "that is",
    "it's": "it is",
    "whos": "who is",
    "who's": "who is",
    "hows": "how is",
    "how's": "how is",
    "color": "colour",
    "colors": "colours",
    "colour's": "colour is",
    "color's": "colour is",
    "descrbe": "describe",
    "discribe": "describe",
    "desribe": "describe",
    "decribe": "describe",
    "pls": "please",
    "plz": "please",
    "im": "i am",
    "i'm": "i am",
    "wot": "what",
    "wha": "what",
    "iz": "is",
    "tihs": "this",
    "thsi": "this",
    "teh": "the",
    "hte": "the",
    "describing": "describe",  # "would you mind describing it"
    "explaining": "explain",
    "counting": "count",
    "summarising": "summarise",
    "summarizing": "summarise",
    "transcribing": "transcribe",
    "whatcha": "what do you",
    "watcha": "what do you",
    "hapy": "happy",
    "wtf": "what",
    "wth": "what",
    "thr": "there",
    "c": "see",
    "recognize": "recognise",
    "anyone": "someone",  # "is anyone in the photo?": as the question bank asks it
    "anybody": "someone",
    "somebody": "someone",
}
_WORD = re.compile(r"[\w']+")
# "Hey,", "please", "could you tell me", "I wonder": dropped, leaving the question itself.
_POLITE = re.compile(
    r"^(?:(?:hey|hi|hello) there|hey|hi|hello|yo|ok|okay|alright|so|well|um|and|but|bot|please|quick question|quick one|"
    r"random question(?: but)?|just (?:wondering|curious)|curious|out of curiosity|in your opinion|(?:to )?be honest|"
    r"tbh|honestly|"
    r"(?:could|can|would|will) you(?: please)?(?= (?:tell|describe|count|check|explain|give|"
    r"let|say|caption|identify|name|guess|write))|"
    r"(?:tell|let) me know|tell me(?= (?:what|which|how|where|if|whether|the|who))|"
    r"do you know|any idea|i wonder|i (?:would like|want|wanna) to know|check|"
    r"(?:(?:is there )?any chance (?:that )?|i (?:was|am) hoping |hoping )you (?:could|can|would|might)(?: please)?"
    r"(?= (?:tell|describe|count|check|explain|give|let|say|caption|identify|name|guess|write|read|transcribe)))"
    r"\b[\s,:!.\u2013\u2014-]*"  # "hey there! is it sad", "quick question - what is this"
)
# Words that add nothing to what is asked, wherever they stand: "so um what is this", "briefly describe it",
# "what am i even looking at", "is there maybe a cat".
_FILLERS = re.compile(
    r"\b(?:um+|uh+|erm|hmm+|hiya|basically|actually|really|just|even|exactly|maybe|perhaps|possibly|kindly|"
    r"briefly|quickly|roughly|approximately|honestly|simply)\b[\s,]*"
)
# "what on earth is this", "what the heck is that": what is asked is "what is this".
_EXPLETIVE = re.compile(r"\b(what|where|who|how) (?:on earth|in the world|the (?:heck|hell|fuck|devil))\b")
# Emoji and other pictographs, wherever they stand: "what is this 🤔", "any cars in this pic 🚗".
_PICTOGRAPHS = re.compile("[\u2190-\u21ff\u2300-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff\ufe0f\u200d]+")
# An aside at the end that asks nothing: "what colour is the car, if you don't mind me asking", "... real quick lol"
_THANKS = re.compile(
    r"[\s,]*\b(?:please|please and thank you|thanks|thank you|thx|ty|cheers(?: mate)?|for me|"
    r"in (?:a |one )?(?:few words|word|sentence|nutshell|short|detail)|in (?:your own words|simple terms|plain english)|"
    r"if you (?:do not|don't) mind(?: me asking| my asking)?|when you (?:have|get) a (?:sec|second|moment|minute|chance)|"
    r"if (?:that|it) is (?:ok|okay|alright|fine)|if (?:possible|you can|you could)|by any chance|real quick|"
    r"(?:thanks|thank you|thx) in advance|lol|lmao|haha+|hehe)$"
)
_EMOTICONS = re.compile(r"(?<!\w)[:;=]-?[()dp3/|]+(?!\w)")  # ":)", ";-)", ":d": lower case already


def tidy(question: str) -> str:
    """Lower case, one space, typos and contractions spelt out, polite framing and end punctuation dropped."""
    text = " ".join(_EMOTICONS.sub(" ", _PICTOGRAPHS.sub(" ", question.lower().replace("\u2019", "'"))).split())
    text = _WORD.sub(lambda word: _WORDS.get(word.group(), word.group()), text)
    text = _EXPLETIVE.sub(r"\1", _FILLERS.sub("", text))
    text = re.sub(r"[\s?!.,;:？！。，]+$", "", text)  # Chinese full-width marks too
    while True:
        shorter = _THANKS.sub("", _POLITE.sub("", text)).strip(" ,")
        if shorter == text:
            return text
        text = shorter
