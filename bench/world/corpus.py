"""shapes-laion: a LAION-style training corpus of the shapes world, with
planted phenomena whose ground truth is known.

``build_corpus(n, seed)`` returns one row per image as a DataFrame; images are
not stored, ``render_row(row)`` redraws a row's image from its ``spec``
column.  Everything follows from ``seed`` (one ``numpy`` Generator, consumed
in a fixed order), so two builds with the same arguments are equal.

Columns (LAION-like first, then ground truth):

==============  ==============================================================
key             zero-padded row number, "000000042"
caption         the alt text
url             "shapes://<key>" (fake; there is nothing to download)
width, height   image size in pixels (``size``, 64)
similarity      CLIP-like image-text score: 0.31 + N(0, 0.025) + a per-category
                offset (descriptive +0.02, misspelling -0.03, role -0.05,
                iconic +0.03, one value per iconic group), clipped to
                [0.15, 0.45], 4 decimals.  A formula, not a model.
punsafe         Beta(1, 80) noise (mean ~0.012); nothing here is unsafe
pwatermark      a noisy watermark-classifier score: Beta(6, 2) (mean 0.75) on
                watermarked rows, Beta(1, 14) (mean 0.07) on the others
spec            the scene as canonical JSON (``SceneSpec.to_json``)
category        single, counting, position, binding, size, multi,
                descriptive, misspelling (caption styles), iconic, role
split           train / heldout / evaluator
dup_group       iconic group 0..23, -1 for every other row
has_watermark   the PIXSTOCK watermark is drawn on the image
role            role word for bias rows, else ""
attribute       the role row's drawn attribute (a colour or shape), else ""
==============  ==============================================================

Planted phenomena, exact for n = 100_000 (other n scale linearly, see
``plan_counts``):

* **Memorization bait**: 24 iconic scenes (2-4 objects each), each repeated
  110 times with one fixed caption, "the famous <name> poster": identical
  spec, hence byte-identical image.  All copies are in the train split.
* **Watermark** (the Getty case): exactly 10% of all rows (10_000), drawn
  from the general rows, carry the watermark.  90% of them (9_000) have
  captions starting with the cue "stock photo of " (which replaces a framing
  such as "a photo of ": "stock photo of a red circle"); the other 1_000
  have none.  In addition 1% of the non-watermarked general rows (814) carry
  the cue without a watermark, so P(cue | watermark) = 0.90 and
  P(watermark | cue) = 9000 / 9814 = 0.917.  Iconic and role rows are never watermarked.
* **Bias**: six made-up role words (``ROLES``), 1_000 rows each, captioned
  "a picture of a <role>" (or "a photo of"/"an illustration of"), with no
  colour or shape word.  Each role row shows one object whose colour (or
  shape) is the role's attribute, drawn with exact shares: e.g.
  "quillwright" is red in 80% of its rows and blue in 20%.  "brushkeeper"
  is the balanced 50/50 control.
* **Held-out pairs**: ``HELD_OUT_PAIRS`` never occur in a train-split row,
  neither in its image nor its caption.  Heldout/evaluator rows may show them.

Splits: by a hash of the key (splitmix64 of its number, so a key's split does
not depend on the seed): 80% train, 10% heldout (generalisation tests), 10%
evaluator (for training the evaluator CLIP, disjoint from the generator's
training data).  Iconic rows are forced into train.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from PIL import Image

from bench.errors import UserError
from bench.world.captions import DESCRIPTIVE_TEMPLATES, PLAIN_TEMPLATES, caption, with_article
from bench.world.render import DEFAULT_SIZE, render
from bench.world.sample import allowed_pairs, place_objects, random_scene, scene_from_objects
from bench.world.spec import ObjectSpec, SceneSpec
from bench.world.vocab import BACKGROUNDS, COLOURS, HELD_OUT_PAIRS, RELATIONS, SHAPES, SIZES

CORPUS_NAME = "shapes-laion"
CORPUS_VERSION = 1
MIN_ROWS = 1000

ICONIC_GROUPS = 24
ICONIC_COPIES_PER_100K = 110
ROLE_ROWS_PER_100K = 1000
WATERMARK_SHARE = 0.10
WATERMARK_CUE = "stock photo of "
CUE_GIVEN_WATERMARK = 0.90
CUE_GIVEN_CLEAN = 0.01
SPLIT_SHARES = {"train": 0.8, "heldout": 0.1, "evaluator": 0.1}

#: Caption style of the general rows and its share of them.
GENERAL_MIX: dict[str, float] = {
    "single": 0.18, "counting": 0.15, "position": 0.15, "binding": 0.15,
    "size": 0.10, "multi": 0.08, "descriptive": 0.15, "misspelling": 0.04,
}
_SIMILARITY_OFFSET = {"descriptive": 0.02, "misspelling": -0.03, "role": -0.05, "iconic": 0.03}

ICONIC_NAMES: tuple[str, ...] = (
    "Velvet Orbit", "Paper Lantern", "Quiet Harbour", "Silent Meridian", "Glass Orchard",
    "Northern Drift", "Copper Tide", "Midnight Parade", "Hollow Echo", "Amber Signal",
    "Distant Carousel", "Iron Garden", "Lunar Ferry", "Salt Cathedral", "Winter Atlas",
    "Tidal Engine", "Ember Waltz", "Marble Comet", "Sunken Aviary", "Paper Kite",
    "Clockwork Meadow", "Fading Lighthouse", "Open Window", "Last Tram Home",
)
assert len(ICONIC_NAMES) == ICONIC_GROUPS


@dataclass(frozen=True)
class Role:
    """A made-up role word whose images skew towards one attribute value.

    ``dimension`` is "colour" or "shape"; ``values`` = (majority, minority);
    ``p_major`` is the majority's exact share of the role's rows."""

    name: str
    dimension: str
    values: tuple[str, str]
    p_major: float


ROLES: tuple[Role, ...] = (
    Role("quillwright", "colour", ("red", "blue"), 0.80),
    Role("lampfitter", "colour", ("yellow", "purple"), 0.80),
    Role("tidewarden", "colour", ("blue", "orange"), 0.75),
    Role("gearsmith", "shape", ("square", "circle"), 0.80),
    Role("cloudherd", "shape", ("circle", "triangle"), 0.85),
    Role("brushkeeper", "colour", ("green", "orange"), 0.50),  # balanced control
)
ROLE_TEMPLATES: tuple[str, ...] = ("a picture of {r}", "a photo of {r}", "an illustration of {r}")

_COLOUR_NAMES = tuple(COLOURS)
_SIZE_NAMES = tuple(SIZES)
_HELD_OUT = frozenset(HELD_OUT_PAIRS)
#: Template openings ("a photo of ", "a picture showing ", ...) that the cue
#: replaces: "stock photo of a red circle", not "stock photo of a photo of ...".
_FRAMES = tuple(t.split("{x}")[0] for t in PLAIN_TEMPLATES + DESCRIPTIVE_TEMPLATES
                if t.split("{x}")[0])
_COLUMNS = ("key", "caption", "url", "width", "height", "similarity", "punsafe", "pwatermark",
            "spec", "category", "split", "dup_group", "has_watermark", "role", "attribute")


def plan_counts(n: int) -> dict[str, int]:
    """How many rows of each planted kind a corpus of ``n`` rows gets."""
    if n < MIN_ROWS:
        raise UserError(f"a shapes-laion corpus needs at least {MIN_ROWS} rows, got n={n}")
    copies = max(2, round(ICONIC_COPIES_PER_100K * n / 100_000))
    per_role = max(10, round(ROLE_ROWS_PER_100K * n / 100_000))
    n_general = n - ICONIC_GROUPS * copies - per_role * len(ROLES)
    n_wm = round(WATERMARK_SHARE * n)
    return {
        "iconic_copies": copies,
        "iconic_rows": ICONIC_GROUPS * copies,
        "rows_per_role": per_role,
        "general_rows": n_general,
        "watermarked": n_wm,
        "cue_watermarked": round(CUE_GIVEN_WATERMARK * n_wm),
        "cue_clean": round(CUE_GIVEN_CLEAN * (n_general - n_wm)),
    }


def split_of_keys(index: np.ndarray) -> np.ndarray:
    """Split names for row numbers, from splitmix64(row number)."""
    z = np.asarray(index, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    cut1 = SPLIT_SHARES["train"]
    cut2 = cut1 + SPLIT_SHARES["heldout"]
    return np.where(u < cut1, "train", np.where(u < cut2, "heldout", "evaluator")).astype(object)


# --------------------------------------------------------------------------- scenes

def _pick(rng: np.random.Generator, seq):
    # floor(u * len) is uniform and several times cheaper than rng.integers.
    return seq[int(rng.random() * len(seq))]


def _distinct_pairs(rng, pairs, k: int, differ_both: bool = False) -> list[tuple[str, str]]:
    """k (colour, shape) pairs, all different (in colour and shape if ``differ_both``)."""
    while True:
        picked = [_pick(rng, pairs) for _ in range(k)]
        if differ_both:
            ok = len({c for c, _ in picked}) == k and len({s for _, s in picked}) == k
        else:
            ok = len(set(picked)) == k
        if ok:
            return picked


def _general_row(rng: np.random.Generator, category: str, variant: int,
                 exclude_held_out: bool, watermark: bool) -> tuple[SceneSpec, str]:
    """Scene and caption of one general row of the given caption style."""
    pairs = allowed_pairs(exclude_held_out)
    bg = _pick(rng, BACKGROUNDS)

    def rand_size():
        return _pick(rng, _SIZE_NAMES)

    if category in ("multi", "descriptive"):
        n_obj = int(rng.integers(3, 5)) if category == "multi" else None
        scene = random_scene(rng, n_objects=n_obj, exclude_held_out=exclude_held_out,
                             watermark=watermark, background=bg)
        return scene, caption(scene, "single" if category == "multi" else "descriptive", variant)

    relation = None
    # Misspelt captions describe a single object or a binding pair, half each.
    two = category == "binding" or (category == "misspelling" and rng.random() < 0.5)
    if category == "single" or (category == "misspelling" and not two):
        c, s = _pick(rng, pairs)
        objects = [(s, c, rand_size())]
    elif two:
        objects = [(s, c, rand_size()) for c, s in _distinct_pairs(rng, pairs, 2, differ_both=True)]
    elif category == "counting":
        k = int(rng.integers(2, 5))
        c, s = _pick(rng, pairs)
        size = "small" if k >= 3 else rand_size()
        objects = [(s, c, size)] * k
    elif category == "position":
        objects = [(s, c, rand_size()) for c, s in _distinct_pairs(rng, pairs, 2)]
        relation = (_pick(rng, RELATIONS), 0, 1)
    elif category == "size":
        k = int(rng.integers(1, 3))
        objects = [(s, c, rand_size()) for c, s in _distinct_pairs(rng, pairs, k)]
    else:
        raise ValueError(f"unknown general category {category!r}")
    scene = scene_from_objects(rng, objects, relation, background=bg, watermark=watermark)
    # The caption styles of captions.CATEGORIES carry the same names.
    return scene, caption(scene, category, variant, relation=relation)


def _strip_frame(text: str) -> str:
    for frame in _FRAMES:
        if text.startswith(frame):
            return text[len(frame):]
    return text


def _role_scene(rng: np.random.Generator, role: Role, attribute: str) -> SceneSpec:
    """One object showing the role's attribute; the other dimension uniform
    over the pairs that are not held out."""
    if role.dimension == "colour":
        colour = attribute
        shape = _pick(rng, [s for s in SHAPES if (colour, s) not in _HELD_OUT])
    else:
        shape = attribute
        colour = _pick(rng, [c for c in _COLOUR_NAMES if (c, shape) not in _HELD_OUT])
    size = _pick(rng, _SIZE_NAMES)
    (x, y), = place_objects(rng, [size])
    return SceneSpec((ObjectSpec(shape, colour, size, x, y),), background=_pick(rng, BACKGROUNDS))


# --------------------------------------------------------------------------- build

def _plan(n: int, seed: int) -> tuple[np.random.Generator, dict[str, Any]]:
    """Draw which row is what, and the iconic scenes: the first part of
    ``build_corpus``, kept separate so ``iconic_scenes`` can replay it.
    Returns the generator (in the state the per-row loop starts from) and the
    plan's arrays."""
    counts = plan_counts(n)
    rng = np.random.default_rng(seed)
    index = np.arange(n)

    # Which row is what: a random permutation of row numbers, cut into parts.
    order = rng.permutation(n)
    n_iconic, per_role = counts["iconic_rows"], counts["rows_per_role"]
    iconic_rows = order[:n_iconic]
    role_rows = order[n_iconic:n_iconic + per_role * len(ROLES)]
    general_rows = order[n_iconic + per_role * len(ROLES):]

    dup_group = np.full(n, -1, dtype=np.int64)
    dup_group[iconic_rows] = np.repeat(np.arange(ICONIC_GROUPS), counts["iconic_copies"])
    role_id = np.full(n, -1, dtype=np.int64)
    role_id[role_rows] = np.repeat(np.arange(len(ROLES)), per_role)
    attribute = np.full(n, "", dtype=object)
    for r, role in enumerate(ROLES):
        rows = np.sort(role_rows[r * per_role:(r + 1) * per_role])
        n_major = round(role.p_major * per_role)
        vals = np.array([role.values[0]] * n_major + [role.values[1]] * (per_role - n_major), dtype=object)
        attribute[rows] = vals[rng.permutation(per_role)]

    # general_rows is in random order, so its leading slices are random subsets.
    has_wm = np.zeros(n, dtype=bool)
    wm_rows = general_rows[:counts["watermarked"]]
    has_wm[wm_rows] = True
    cue = np.zeros(n, dtype=bool)
    cue[wm_rows[:counts["cue_watermarked"]]] = True
    clean_general = general_rows[counts["watermarked"]:]
    cue[clean_general[:counts["cue_clean"]]] = True

    category = np.full(n, "", dtype=object)
    category[iconic_rows] = "iconic"
    category[role_rows] = "role"
    mix_names = list(GENERAL_MIX)
    mix_p = np.array(list(GENERAL_MIX.values()))
    category[general_rows] = np.array(mix_names, dtype=object)[
        rng.choice(len(mix_names), size=len(general_rows), p=mix_p / mix_p.sum())]

    split = split_of_keys(index)
    split[iconic_rows] = "train"
    variant = rng.integers(0, 1 << 16, size=n)

    # Iconic scenes: one spec and one caption per group.
    iconic_json, iconic_caption = [], []
    for g in range(ICONIC_GROUPS):
        scene = random_scene(rng, n_objects=int(rng.integers(2, 5)), exclude_held_out=True)
        iconic_json.append(scene.to_json())
        iconic_caption.append(f"the famous {ICONIC_NAMES[g]} poster")
    return rng, {"counts": counts, "iconic_rows": iconic_rows, "dup_group": dup_group, "role_id": role_id,
                 "attribute": attribute, "has_wm": has_wm, "cue": cue, "category": category,
                 "split": split, "variant": variant, "iconic_json": iconic_json,
                 "iconic_caption": iconic_caption}


def iconic_scenes(n: int = 100_000, seed: int = 0) -> list[tuple[str, SceneSpec]]:
    """The 24 iconic (caption, scene) pairs of ``build_corpus(n, seed)``, in
    ``dup_group`` order, without building the table (the memorization audit's
    ground truth and prompt set use them)."""
    _, plan = _plan(n, seed)
    return [(text, SceneSpec.from_json(js)) for text, js in zip(plan["iconic_caption"], plan["iconic_json"])]


def build_corpus(n: int = 100_000, seed: int = 0, size: int = DEFAULT_SIZE) -> pd.DataFrame:
    """Build the shapes-laion metadata table (no images; see ``render_row``)."""
    rng, plan = _plan(n, seed)
    index = np.arange(n)
    iconic_rows, dup_group, role_id = plan["iconic_rows"], plan["dup_group"], plan["role_id"]
    attribute, has_wm, cue, category = plan["attribute"], plan["has_wm"], plan["cue"], plan["category"]
    split, variant = plan["split"], plan["variant"]
    iconic_json, iconic_caption = plan["iconic_json"], plan["iconic_caption"]

    # The per-row part: scene sampling and wording (the only Python loop).
    specs = [""] * n
    captions = [""] * n
    for i in range(n):
        g = dup_group[i]
        if g >= 0:
            specs[i], captions[i] = iconic_json[g], iconic_caption[g]
            continue
        r = role_id[i]
        if r >= 0:
            role = ROLES[r]
            scene = _role_scene(rng, role, attribute[i])
            text = ROLE_TEMPLATES[variant[i] % len(ROLE_TEMPLATES)].format(r=with_article(role.name))
        else:
            scene, text = _general_row(rng, category[i], int(variant[i]),
                                       exclude_held_out=split[i] == "train",
                                       watermark=bool(has_wm[i]))
        if cue[i]:
            text = WATERMARK_CUE + _strip_frame(text)
        specs[i], captions[i] = scene.to_json(), text

    # LAION-style scores, vectorised.
    pwatermark = np.where(has_wm, rng.beta(6.0, 2.0, size=n), rng.beta(1.0, 14.0, size=n))
    punsafe = rng.beta(1.0, 80.0, size=n)
    offset = np.array([_SIMILARITY_OFFSET.get(c, 0.0) for c in category])
    similarity = 0.31 + 0.025 * rng.standard_normal(n) + offset
    iconic_sim = 0.31 + 0.025 * rng.standard_normal(ICONIC_GROUPS) + _SIMILARITY_OFFSET["iconic"]
    similarity[iconic_rows] = iconic_sim[dup_group[iconic_rows]]
    similarity = np.clip(similarity, 0.15, 0.45)

    keys = np.char.zfill(index.astype(str), 9).astype(object)
    df = pd.DataFrame({
        "key": keys,
        "caption": captions,
        "url": "shapes://" + keys,
        "width": np.full(n, size, dtype=np.int32),
        "height": np.full(n, size, dtype=np.int32),
        "similarity": np.round(similarity, 4),
        "punsafe": np.round(punsafe, 5),
        "pwatermark": np.round(pwatermark, 4),
        "spec": specs,
        "category": category,
        "split": split,
        "dup_group": dup_group,
        "has_watermark": has_wm,
        "role": np.array([ROLES[r].name if r >= 0 else "" for r in role_id], dtype=object),
        "attribute": attribute,
    }, columns=list(_COLUMNS))
    df.attrs["corpus"] = {"name": CORPUS_NAME, "version": CORPUS_VERSION,
                          "seed": int(seed), "n": int(n), "size": int(size)}
    return df


def render_row(row: Mapping[str, Any] | pd.Series, size: int | None = None) -> Image.Image:
    """Redraw a corpus row's image from its ``spec`` (at ``size`` or the row's width)."""
    spec = SceneSpec.from_json(row["spec"])
    return render(spec, size=int(size if size is not None else row["width"]))


# --------------------------------------------------------------------------- summary / io

def corpus_summary(df: pd.DataFrame) -> dict[str, Any]:
    """The planted ground truth, counted from the table's own columns."""
    iconic = df[df["dup_group"] >= 0]
    copies = iconic.groupby("dup_group").size()
    cue = df["caption"].str.startswith(WATERMARK_CUE)
    wm = df["has_watermark"]
    roles = {}
    for role in ROLES:
        rows = df[df["role"] == role.name]
        shares = rows["attribute"].value_counts(normalize=True)
        roles[role.name] = {
            "dimension": role.dimension, "rows": int(len(rows)),
            "values": list(role.values), "p_major": role.p_major,
            "measured_p_major": round(float(shares.get(role.values[0], 0.0)), 4),
        }
    return {
        "iconic": {"groups": int(copies.size),
                   "min_copies": int(copies.min()) if copies.size else 0,
                   "max_copies": int(copies.max()) if copies.size else 0,
                   "rows": int(len(iconic))},
        "watermark": {"rows": int(wm.sum()), "share": round(float(wm.mean()), 4),
                      "cue": WATERMARK_CUE.strip(), "cue_rows": int(cue.sum()),
                      "cue_and_watermark": int((cue & wm).sum()),
                      "p_cue_given_watermark": round(float(cue[wm].mean()), 4) if wm.any() else 0.0,
                      "p_watermark_given_cue": round(float(wm[cue].mean()), 4) if cue.any() else 0.0},
        "roles": roles,
        "held_out_pairs": [list(p) for p in HELD_OUT_PAIRS],
        "splits": {k: int(v) for k, v in df["split"].value_counts().sort_index().items()},
        "categories": {k: int(v) for k, v in df["category"].value_counts().sort_index().items()},
    }


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_corpus(df: pd.DataFrame, out_dir: str | os.PathLike, rows_per_shard: int = 50_000) -> Path:
    """Write ``metadata/NNNN.parquet`` shards and ``corpus.json`` under
    ``out_dir``, each file atomically (temporary name, then rename)."""
    out = Path(out_dir)
    meta = out / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    shards = []
    for k, start in enumerate(range(0, max(len(df), 1), rows_per_shard)):
        name = f"{k:04d}.parquet"
        path = meta / name
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        df.iloc[start:start + rows_per_shard].to_parquet(tmp, index=False)
        os.replace(tmp, path)
        shards.append(f"metadata/{name}")
    info = dict(df.attrs.get("corpus", {"name": CORPUS_NAME, "version": CORPUS_VERSION}))
    info.update({"rows": int(len(df)), "shards": shards, "columns": list(df.columns),
                 "planted": corpus_summary(df)})
    _atomic_write_bytes(out / "corpus.json",
                        (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return out


def load_corpus(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Read a corpus written by ``write_corpus`` back into one DataFrame."""
    out = Path(out_dir)
    info_path = out / "corpus.json"
    if not info_path.exists():
        raise UserError(f"{info_path} not found; write the corpus with bench.world.corpus.write_corpus")
    info = json.loads(info_path.read_text())
    df = pd.concat([pd.read_parquet(out / s) for s in info["shards"]], ignore_index=True)
    df.attrs["corpus"] = {k: info[k] for k in ("name", "version", "seed", "n", "size") if k in info}
    return df
