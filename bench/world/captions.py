"""The caption grammar of the shapes world.

Captions are produced from *prompt specs* (the JSON format documented in
``bench.world.detect``: groups of objects with shape, colour, count and size,
and an optional relation), so that a caption and the spec its judge reads can
never disagree.  ``scene_prompt_spec`` turns a rendered scene into such a
spec; ``caption_for_spec`` words it.  There is no randomness here: callers
draw an integer ``variant`` from their seeded generator to pick a template
(and a typo), so captions are deterministic given a seed.

Categories (DrawBench / GenEval style):

* ``single``      "a red circle"
* ``counting``    "three blue squares"
* ``position``    "a red circle to the left of a green star"
* ``binding``     "a red circle and a blue square"
* ``size``        "a small yellow triangle"
* ``descriptive`` "a picture showing a single large green star on a white background"
* ``misspelling`` "a red cirle" (one colour or shape word misspelt, ``misspell``)

``HELD_OUT_PAIRS`` (from ``vocab``) are the (colour, shape) combinations that
the corpus never shows in its train split, in captions or images.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from bench.world.spec import SceneSpec
from bench.world.vocab import (BACKGROUND_PHRASES, COUNT_WORDS, HELD_OUT_PAIRS, PLURALS,
                               RELATION_PHRASES)

__all__ = ["HELD_OUT_PAIRS", "CATEGORIES", "TYPOS", "noun_phrase", "scene_prompt_spec",
           "describe", "caption_for_spec", "caption", "colour_caption", "misspell", "with_article"]

CATEGORIES: tuple[str, ...] = ("single", "counting", "position", "binding", "size",
                               "descriptive", "misspelling")

#: Framing templates for the short categories ("{x}" = the description).
PLAIN_TEMPLATES: tuple[str, ...] = ("{x}", "a photo of {x}", "an image of {x}", "a drawing of {x}")
#: Long / paraphrased templates ("{bg}" = the background phrase).
DESCRIPTIVE_TEMPLATES: tuple[str, ...] = (
    "a picture showing {x} on {bg}",
    "a simple illustration of {x}, set against {bg}",
    "a clean flat graphic with {x} on {bg}",
    "a minimalist image containing {x} in front of {bg}",
)

#: Colour-first wordings for the 'colors' prompts ({c} colour, {s} shape).
COLOUR_TEMPLATES: tuple[str, ...] = ("{s} coloured {c}", "{c}-coloured {s}", "{s} that is {c}",
                                     "{s} painted {c}")

#: Deterministic misspellings of the colour and shape words.
TYPOS: dict[str, tuple[str, ...]] = {
    "circle": ("cirle", "circel", "circl"),
    "square": ("sqaure", "squre", "suqare"),
    "triangle": ("traingle", "triangel", "trinagle"),
    "star": ("stra", "satr", "starr"),
    "red": ("rde", "redd"),
    "orange": ("ornage", "oragne"),
    "yellow": ("yelow", "yellwo"),
    "green": ("gren", "grene"),
    "blue": ("bleu", "blu"),
    "purple": ("purpel", "pruple"),
}

_WORD = re.compile(r"[a-z]+")


def with_article(phrase: str) -> str:
    """'a'/'an' + phrase, by the phrase's first letter."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def noun_phrase(shape: str | None, colour: str | None = None, count: int = 1,
                size: str | None = None, single: bool = False) -> str:
    """'a small red circle', 'three blue squares', 'two stars', 'a single star'.

    A missing shape reads as 'shape(s)'; ``single`` writes 'a single ...'."""
    noun = shape or "shape"
    if count != 1:
        noun = PLURALS.get(noun, noun + "s")
    words = " ".join(w for w in (size, colour, noun) if w)
    if count == 1:
        return ("a single " + words) if single else with_article(words)
    return f"{COUNT_WORDS[count]} {words}"


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(prompt_spec: dict[str, Any], single: bool = False) -> str:
    """The bare description of a prompt spec: groups joined with 'and', or
    'A <relation phrase> B' (other groups appended with 'and')."""
    groups = prompt_spec["objects"]
    only_one = single and len(groups) == 1 and groups[0].get("count", 1) == 1
    nps = [noun_phrase(g.get("shape"), g.get("colour"), g.get("count", 1), g.get("size"),
                       single=only_one) for g in groups]
    rel = prompt_spec.get("relation")
    if rel is None:
        return _join(nps)
    head = f"{nps[rel['a']]} {RELATION_PHRASES[rel['type']]} {nps[rel['b']]}"
    rest = [p for i, p in enumerate(nps) if i not in (rel["a"], rel["b"])]
    return _join([head] + rest)


def colour_caption(shape: str, colour: str, variant: int = 0) -> str:
    """'a circle coloured red', 'an orange-coloured star', ..."""
    template = COLOUR_TEMPLATES[variant % len(COLOUR_TEMPLATES)]
    return with_article(template.format(s=shape, c=colour))


def misspell(text: str, variant: int = 0) -> str:
    """Misspell one colour or shape word of ``text`` (plurals included).

    ``variant`` picks the word (variant mod #candidates) and then the typo.
    Text without such a word is returned unchanged."""
    spans = []
    for m in _WORD.finditer(text):
        w = m.group(0)
        stem = w[:-1] if w.endswith("s") and w[:-1] in TYPOS else w
        if stem in TYPOS:
            spans.append((m.start(), m.start() + len(stem), stem))
    if not spans:
        return text
    start, end, stem = spans[variant % len(spans)]
    typos = TYPOS[stem]
    typo = typos[(variant // len(spans)) % len(typos)]
    return text[:start] + typo + text[end:]


def caption_for_spec(prompt_spec: dict[str, Any], category: str, variant: int = 0,
                     background: str | None = None) -> str:
    """Word a prompt spec in the style of ``category`` (see CATEGORIES).

    ``variant`` picks the template (and, for 'misspelling', the typo);
    ``background`` (a BACKGROUNDS name) is used by 'descriptive' captions."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown caption category {category!r}; expected one of {CATEGORIES}")
    if category == "descriptive":
        bg = BACKGROUND_PHRASES.get(background or prompt_spec.get("background") or "white")
        template = DESCRIPTIVE_TEMPLATES[variant % len(DESCRIPTIVE_TEMPLATES)]
        return template.format(x=describe(prompt_spec, single=True), bg=bg)
    template = PLAIN_TEMPLATES[variant % len(PLAIN_TEMPLATES)]
    text = template.format(x=describe(prompt_spec))
    if category == "misspelling":
        text = misspell(text, variant // len(PLAIN_TEMPLATES))
    return text


def scene_prompt_spec(scene: SceneSpec, with_size: bool = False,
                      relation: tuple[str, int, int] | None = None) -> dict[str, Any]:
    """The prompt spec that describes a whole scene.

    Identical objects (same shape and colour, and size if ``with_size``) are
    grouped with a count, in order of first appearance.  ``relation`` =
    (type, i, j) over *object* indices becomes a relation between their
    groups."""
    groups: list[dict[str, Any]] = []
    index: dict[tuple, int] = {}
    obj_group = []
    for o in scene.objects:
        key = (o.shape, o.colour, o.size if with_size else None)
        if key not in index:
            index[key] = len(groups)
            groups.append({"shape": o.shape, "colour": o.colour, "count": 0,
                           "size": o.size if with_size else None})
        groups[index[key]]["count"] += 1
        obj_group.append(index[key])
    rel = None
    if relation is not None:
        rel = {"type": relation[0], "a": obj_group[relation[1]], "b": obj_group[relation[2]]}
    return {"objects": groups, "relation": rel}


def caption(scene: SceneSpec, category: str, variant: int = 0,
            relation: tuple[str, int, int] | None = None) -> str:
    """Caption a scene: size words for 'size' and 'descriptive', the relation
    (type, i, j) if given, background for 'descriptive'."""
    spec = scene_prompt_spec(scene, with_size=category in ("size", "descriptive"),
                             relation=relation)
    return caption_for_spec(spec, category, variant, background=scene.background)
