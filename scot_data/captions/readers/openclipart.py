"""Debian's ``openclipart-svg``: public-domain drawings whose SVG metadata names them.

Titles are often a collection's name ("gramastar" on 1,375 stars, "Lemon SVG theme") or an
author credit, so a title shared by many drawings, or shaped like a credit, is replaced by
the words of the file name; keywords minus generic ones and a short description follow.
Symlinked duplicates resolve to one image and are dropped by the stage's deduplication.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scot_data.captions.config import OpenclipartCaptions
from scot_data.captions.readers.common import candidate_or_reject, normalise_caption, require_path
from scot_data.captions.records import Candidate, Reject, SvgImage
from scot_data.manifest import InputRef, fingerprint_input

NAMESPACES = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "cc": "http://web.resource.org/cc/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}
_CREDIT_PREFIX = re.compile(r"^clip\s*art by [^-]+-\s*", re.IGNORECASE)
_COLLECTION_WORDS = re.compile(
    r"\b(collection|theme|icons|iconset|cliparts|clipart|svg|symbol signs|submission|sibmission)\b",
    re.IGNORECASE,
)
_TOKEN_SPLIT = re.compile(r"[\s_\-.,()\[\]]+")
_TRAILING_DIGITS = re.compile(r"\d+$")
MIN_WORD_LETTERS = 3


@dataclass(frozen=True)
class SvgMetadata:
    """What the caption is built from, as the SVG's RDF block states it."""

    path: Path
    key: str
    title: str
    description: str
    keywords: tuple[str, ...]
    creator: str


def openclipart_inputs(cfg: OpenclipartCaptions) -> list[InputRef]:
    """The whole SVG tree, by content."""
    require_path(cfg.input, "openclipart SVG folder", directory=True)
    return [fingerprint_input(cfg.input)]


def _text(work: ET.Element, path: str) -> str:
    return normalise_caption(work.findtext(path, default="", namespaces=NAMESPACES) or "")


def read_metadata(root: Path, path: Path) -> SvgMetadata:
    """Parse one SVG's metadata; raises ET.ParseError or OSError for a broken file."""
    work = ET.parse(path).find(".//cc:Work", NAMESPACES)
    key = path.resolve().relative_to(root.resolve()).as_posix()
    if work is None:
        return SvgMetadata(path, key, "", "", (), "")
    keywords = tuple(
        normalise_caption(li.text) for li in work.findall("dc:subject/rdf:Bag/rdf:li", NAMESPACES) if li.text
    )
    return SvgMetadata(
        path=path,
        key=key,
        title=_text(work, "dc:title"),
        description=_text(work, "dc:description"),
        keywords=keywords,
        creator=_text(work, "dc:creator/cc:Agent/dc:title"),
    )


def _words(text: str, creator: str) -> list[str]:
    """Lower-case words of a title or file name, without numbering and author fragments."""
    author = [w.lower() for w in _TOKEN_SPLIT.split(creator) if len(w) >= MIN_WORD_LETTERS]
    words = []
    for token in _TOKEN_SPLIT.split(text.lower()):
        token = _TRAILING_DIGITS.sub("", token)
        if not token or any(c.isdigit() for c in token):
            continue
        if len(token) >= MIN_WORD_LETTERS and any(a.startswith(token) or token.startswith(a) for a in author):
            continue
        words.append(token)
    return words


def _is_generic(title: str, creator: str, count: int, cfg: OpenclipartCaptions) -> bool:
    return (
        not title
        or count >= cfg.generic_title_min_count
        or bool(_COLLECTION_WORDS.search(title))
        or title.lower() == creator.lower()
    )


def describe(meta: SvgMetadata, title_count: int, cfg: OpenclipartCaptions) -> str:
    """The caption of one drawing ('' when nothing descriptive is left)."""
    title = _CREDIT_PREFIX.sub("", meta.title)
    if _is_generic(title, meta.creator, title_count, cfg):
        title = Path(meta.key).stem
    words = _words(title, meta.creator)
    if not any(sum(c.isalpha() for c in w) >= MIN_WORD_LETTERS for w in words):
        return ""
    name = " ".join(words)
    keywords = _keywords(meta, set(cfg.keyword_stoplist) | set(words))[: cfg.max_keywords]
    caption = name + (f" ({', '.join(keywords)})" if keywords else "")
    if cfg.include_description and _is_informative(meta.description, name):
        caption += ". " + " ".join(meta.description.split()[: cfg.max_description_words])
    return caption


def _keywords(meta: SvgMetadata, stop: set[str]) -> list[str]:
    """Keywords in document order, without generic ones, numbers, codes and the author."""
    creator = meta.creator.lower()
    keywords: list[str] = []
    for keyword in (k.replace("_", " ").lower() for k in meta.keywords):
        if keyword in stop or keyword in keywords or any(c.isdigit() for c in keyword):
            continue
        if creator and (keyword in creator or creator in keyword):
            continue
        keywords.append(keyword)
    return keywords


def _is_informative(description: str, name: str) -> bool:
    """A description adds words beyond the name and is not a credit, an address or a link."""
    text = description.lower()
    if not text or "@" in text or "http" in text or "www." in text:
        return False
    return set(_TOKEN_SPLIT.split(text)) - set(name.split()) - {""} != set()


def _svg_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.svg") if p.is_file())


def scan_openclipart(cfg: OpenclipartCaptions) -> Iterator[Candidate | Reject]:
    """Yield one candidate per drawing (symlinks included: the stage drops the duplicates)."""
    root = require_path(cfg.input, "openclipart SVG folder", directory=True)
    parsed: list[SvgMetadata] = []
    for path in _svg_files(root):
        try:
            parsed.append(read_metadata(root, path))
        except (ET.ParseError, OSError, ValueError) as exc:
            yield Reject(str(path), "svg metadata", f"unreadable SVG: {exc}")
    title_counts = Counter(m.title for m in {m.key: m for m in parsed}.values())
    for meta in parsed:
        caption = describe(meta, title_counts[meta.title], cfg)
        if not caption:
            yield Reject(str(meta.path), "dc:title", f"no descriptive title or file name ({meta.title!r})")
            continue
        image = SvgImage(str(meta.path.resolve()))
        yield candidate_or_reject(cfg.source_name, meta.key, caption, image, str(meta.path), "dc:title")
