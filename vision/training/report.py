"""`clipchat evaluate --report DIR`: an HTML contact sheet of every scored photo, worst CLIPScore first.

Mean scores hide what went wrong; a page of thumbnails with their captions shows it at a glance (a caption
style never learned, one colour always missed). Captions and file names are untrusted text: jinja2's
autoescape writes every one of them as text, never as markup.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jinja2 import Environment

from clipchat.errors import BadImage

from ..intake.images import ImageLimits, load_image
from .evaluation import EvaluationReport

log = logging.getLogger(__name__)

THUMBNAIL_PIXELS = 224  # the longer side: enough to see what CLIP saw, small enough for a thousand photos a page

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Captioner evaluation: {{ report.images }} photos</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .5em; text-align: left; vertical-align: top; }
td.score { font-variant-numeric: tabular-nums; white-space: nowrap; }
img { max-width: {{ size }}px; max-height: {{ size }}px; }
.path { color: #666; font-size: .85em; word-break: break-all; }
ul { margin: 0; padding-left: 1.2em; }
</style>
</head>
<body>
<h1>Captioner evaluation</h1>
<p>{{ report.images }} photos scored ({{ report.skipped }} unreadable skipped).
BLEU-4 {{ "%.4f"|format(report.bleu4) }}, CIDEr {{ "%.4f"|format(report.cider) }},
mean CLIPScore {{ "%.4f"|format(report.clip_score) }}. Sorted by CLIPScore, worst first.</p>
<table>
<thead><tr><th>#</th><th>photo</th><th>CLIPScore</th><th>predicted caption</th><th>reference captions</th>
<th>tags</th></tr></thead>
<tbody>
{% for row in rows %}
<tr class="photo">
<td>{{ loop.index }}</td>
<td>{% if row.thumbnail %}<img src="{{ row.thumbnail }}" alt="{{ row.photo.image.name }}">{% else %}(unreadable)
{% endif %}<div class="path">{{ row.photo.image }}</div></td>
<td class="score">{{ "%.4f"|format(row.photo.clip_score) }}</td>
<td class="caption">{{ row.photo.caption }}</td>
<td><ul>{% for reference in row.photo.references %}<li>{{ reference }}</li>{% endfor %}</ul></td>
<td>{% for tag in row.photo.tags %}{{ tag.label }} ({{ "%.2f"|format(tag.score) }}){% if not loop.last %}, {% endif %}
{% endfor %}</td>
</tr>
{% endfor %}
</tbody>
</table>
</body>
</html>
"""


def write_contact_sheet(report: EvaluationReport, directory: Path, image_limits: ImageLimits = ImageLimits()) -> Path:
    """Write `directory`/index.html and its thumbnails (`directory`/thumbnails/); returns the page's path."""
    thumbnails = directory / "thumbnails"
    thumbnails.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, photo in enumerate(sorted(report.photos, key=lambda photo: photo.clip_score), start=1):
        name = f"{rank:05d}.jpg"  # by rank, not the photo's own name: no untrusted text in a path
        try:
            image = load_image(photo.image.read_bytes(), image_limits)
            image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            image.convert("RGB").save(thumbnails / name, format="JPEG", quality=85)
            rows.append({"photo": photo, "thumbnail": f"thumbnails/{name}"})
        except (OSError, BadImage) as error:  # it was read a moment ago; listed without a picture if not now
            log.warning("no thumbnail for %s: %s", photo.image, getattr(error, "detail", error))
            rows.append({"photo": photo, "thumbnail": None})
    page = Environment(autoescape=True).from_string(_PAGE).render(report=report, rows=rows, size=THUMBNAIL_PIXELS)
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
