"""Which questions CLIP can answer by looking, and what they ask about."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ARTICLES = r"(?:a|an|the|any|some)\s+"


@dataclass(frozen=True)
class Route:
    kind: str  # colour, presence, identify, count, mood or open
    subject: str | None = None  # "circle", "dog" ... or the category for identify ("animal", "place")


_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("colour", re.compile(r"\bwhat colou?rs?\b(?:\s+(?:is|are)\s+(?:the\s+|this\s+|that\s+)?(?P<subject>[\w\s-]+?))?\s*\??$")),
    ("colour", re.compile(r"\bwhich colou?r\b(?:\s+(?:is|are)\s+(?:the\s+|this\s+|that\s+)?(?P<subject>[\w\s-]+?))?\s*\??$")),
    ("count", re.compile(r"\bhow many\s+(?P<subject>[\w\s-]+?)(?:\s+(?:are|is|can|do)\b.*)?\s*\??$")),
    ("presence", re.compile(r"\b(?:is there|are there|do you see|can you see|is it|does it (?:show|have)|"
                            r"does the (?:photo|picture|image) (?:show|have|contain))\s+" + f"(?:{_ARTICLES})?"
                            r"(?P<subject>[\w\s-]+?)(?:\s+in (?:it|this|the (?:photo|picture|image)))?\s*\??$")),
    ("identify", re.compile(r"\bwhat (?:kind of |sort of |type of )?(?P<subject>animal|object|thing|place|shape|food|"
                            r"vehicle|plant|flower|bird|dog|cat)\b.*\??$")),
    ("identify", re.compile(r"\bwhere (?:is|was) (?:this|it|that)\b.*\??$")),
    ("mood", re.compile(r"\b(?:mood|feel(?:ing)?|vibe|atmosphere|emotion)\b")),
]


def route_question(question: str) -> Route:
    text = " ".join(question.lower().split())
    for kind, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            subject = match.groupdict().get("subject")
            if kind == "identify" and subject is None:
                subject = "place"  # "where is this?"
            if subject:
                subject = re.sub(r"\s+(?:in|on|of)\s+(?:it|this|the (?:photo|picture|image))$", "", subject.strip())
                subject = re.sub(rf"^{_ARTICLES}", "", subject)
                if subject in ("it", "this", "that", "they", "those", "these"):
                    subject = None
            return Route(kind, subject or None)
    return Route("open")
