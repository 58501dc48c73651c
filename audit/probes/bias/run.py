"""The bias audit of a run: what each image shows, and per-prompt, per-category and overall shares.

For every image of a run directory the probe reads the attributes asked for
(``audit.probes.bias.attributes``):

* real images: ``gender`` and ``age`` (CLIP zero-shot with prompt ensembles, on
  any open_clip backbone), ``skin_tone`` (MTCNN face, ITA° and Monk swatch);
  gender and age are read on images where MTCNN finds a face (``face_gate``;
  off = HEIM's reading of every image), skin tone always needs one.  Images with
  no face are counted (``n_no_face``) and kept in the table with ``judged`` False;
* built-in world role prompts (``shapes-audit``, category ``role``): the role's
  planted attribute (``role_colour`` / ``role_shape``) by the evaluator CLIP and by
  the exact detector.  The CLIP reads images where the detector finds an object,
  as it reads real images where MTCNN finds a face (``face_gate``): a detector
  finds the attribute's carrier, the CLIP reads the attribute.  Ungated, the CLIP
  names a colour for every empty generation too (measured on builtin:shapes-ldm:
  the 9 empty "tidewarden" images of 16 read as green 7 times, yellow twice),
  and its own object-vs-background zero-shot cannot replace the gate (P(object)
  > 0.5 on 15 of the 54 images with a detected object).

Statistics (``audit.probes.bias.stats``): per prompt, class shares with Wilson
intervals; per category and overall, pooled shares with a seeded two-stage
bootstrap over prompts; MAD (DALL-Eval), imbalance (HEIM), normalised entropy
(OpenBias intensity = 1 - it); the difference from a reference share where one
is known, with its interval: the BLS female share of a profession
(``bls_pct_female`` of the ``professions`` set), or a role's corpus share (its
``p_major``: the exact share planted in shapes-laion), where the difference is
the generator's **amplification**.

The built-in world is also the probe's calibration: per role, the CLIP's share
must lie within ``CALIBRATION_TOLERANCE`` of the detector's exact share on the
same images (summary.json["bias"]["calibration"]).

Outputs (atomic): ``audit/bias.parquet`` (BIAS_TABLE: one row per image, attribute
and method), ``audit/bias_prompts.parquet`` (BIAS_PROMPTS_TABLE), and
summary.json["bias"] (``summarise``).
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from audit.probes.base import load_run_samples
from audit.probes.bias import attributes as A
from audit.probes.bias.stats import MIN_BOOTSTRAP, SCORES, bootstrap_groups, prompt_rows, wilson_interval
from bench import contract as C
from bench.errors import UserError

log = logging.getLogger("t2i_audit")

#: What ``--attributes`` accepts; "auto" = ``role`` for a run of built-in world role prompts, else the rest.
ATTRIBUTES = ("gender", "age", "skin_tone", "role")
REAL_ATTRIBUTES = ("gender", "age", "skin_tone")
AUTO = "auto"
BUILTIN_CLIP = "builtin"
#: The CLIP of real images when none is named: HEIM's (openai/clip-vit-large-patch14) in open_clip's naming.
DEFAULT_REAL_CLIP = "ViT-L-14@openai"
CLIP_METHOD, ITA_METHOD, MONK_METHOD, DETECTOR_METHOD = "clip-zero-shot", "mtcnn-ita", "mtcnn-monk", "detector"
#: Calibration in the built-in world: |CLIP share - detector share| on the same images (the issue's 5 pp).
CALIBRATION_TOLERANCE = 0.05
NO_FACE, NO_SKIN, NO_OBJECT = "no face", "too few skin pixels in the face", "no object detected"
TABLE_COLUMNS = list(C.BIAS_TABLE.columns)
PROMPT_COLUMNS = list(C.BIAS_PROMPTS_TABLE.columns)


@dataclass(frozen=True)
class BiasResult:
    table: pd.DataFrame      # audit/bias.parquet
    prompts: pd.DataFrame    # audit/bias_prompts.parquet
    summary: dict            # summary.json["bias"]


# ------------------------------------------------------------------ options


def parse_attributes(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"auto"`` or a comma list of ``ATTRIBUTES``; an unknown name is a UserError with a suggestion."""
    if value is None:
        return (AUTO,)
    names = [v.strip() for part in ([value] if isinstance(value, str) else value) for v in str(part).split(",")]
    names = [n for n in names if n]
    if not names or names == [AUTO]:
        return (AUTO,)
    for name in names:
        if name not in ATTRIBUTES:
            close = difflib.get_close_matches(name, [*ATTRIBUTES, AUTO], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"unknown bias attribute {name!r}{hint}: use {', '.join(ATTRIBUTES)} or {AUTO}")
    return tuple(dict.fromkeys(names))


def _prompt_extras(run: Path, prompts: str | None, prompt_ids: set[str]) -> dict[str, dict]:
    """Extra columns of the run's prompts by prompt id (role, p_major, bls_pct_female...).

    From ``prompts`` (a prompt file or set name) when given, else from the registered set the
    manifest names (when its hash still matches), else for a set named ``professions*`` (a
    templated copy, audit.probes.bias.prompts) the registered ``professions`` by prompt id.
    """
    from bench import rundir
    from bench.prompts import load_prompt_set, registry

    source = None
    if prompts:
        source = load_prompt_set(prompts)
    else:
        recorded = (rundir.read_manifest(run) or {}).get("prompt_set", {})
        name = recorded.get("name")
        if name in registry():
            source = load_prompt_set(name)
            if recorded.get("sha256") and recorded["sha256"] != source.sha256:
                log.warning("bias: prompt set %s changed since the run was made; its extra columns are not used",
                            name)
                source = None
        elif isinstance(name, str) and name.startswith("professions"):
            source = load_prompt_set("professions")
    if source is None:
        return {}
    extras = {p.id: dict(p.extra) for p in source.prompts}
    missing = prompt_ids - set(extras)
    if prompts and missing:
        log.warning("bias: %d of the run's prompt ids are not in %s (e.g. %s); they get no reference share",
                    len(missing), prompts, sorted(missing)[0])
    return extras


def _is_role(extra: Mapping[str, Any]) -> bool:
    return bool(extra.get("role")) and extra.get("dimension") in ("colour", "shape") and bool(extra.get("values"))


def resolve_attributes(requested: tuple[str, ...], extras: Mapping[str, dict],
                       prompt_ids: Sequence[str]) -> tuple[str, ...]:
    """The attributes to read: ``auto`` = ("role",) when the run has role prompts, else the real ones."""
    has_role = any(_is_role(extras.get(p, {})) for p in prompt_ids)
    if requested == (AUTO,):
        return ("role",) if has_role else REAL_ATTRIBUTES
    if "role" in requested and not has_role:
        raise UserError("attribute 'role' needs built-in world role prompts (t2i-bench generate --prompts "
                        "shapes-audit --category role); this run has none")
    return requested


def resolve_clip(clip: str | None, attributes: tuple[str, ...]) -> str | None:
    """The extractor spec of the CLIP that reads the attributes (None when no attribute needs one)."""
    from bench.score import clip_extractor_spec

    real = [a for a in attributes if a in ("gender", "age")]
    if not real and "role" not in attributes:
        return None
    if clip in (None, "", AUTO):
        clip = DEFAULT_REAL_CLIP if real else BUILTIN_CLIP
    if clip == BUILTIN_CLIP and real:
        raise UserError(f"the built-in evaluator CLIP reads shapes-world colours and shapes, not {' or '.join(real)}: "
                        f"pass --clip MODEL@TAG (e.g. {DEFAULT_REAL_CLIP}, HEIM's CLIP)")
    return clip_extractor_spec(clip)


# ------------------------------------------------------------------ per image


def _read_pixels(run: Path, samples: pd.DataFrame, attributes: tuple[str, ...], roles: Mapping[str, dict],
                 progress: bool) -> tuple[list[dict], int]:
    """Per image: unreadable reason, faces and skin reading, detector reading.  Returns (rows, n_unreadable)."""
    from tqdm.auto import tqdm

    from bench.features.images import ImageProblem, load_image

    want_faces = any(a in attributes for a in REAL_ATTRIBUTES)
    detector = A.FaceDetector() if want_faces else None
    out, bad = [], 0
    for s in tqdm(samples.itertuples(index=False), total=len(samples), unit="img", desc="bias",
                  disable=not progress):
        info: dict[str, Any] = {"problem": "", "faces": None, "skin": None, "object": None}
        try:
            rgb, _ = load_image(run / s.path)
        except ImageProblem as exc:
            info["problem"] = f"unreadable image: {exc}"
            bad += 1
            out.append(info)
            continue
        if detector is not None:
            faces = detector.detect([rgb])[0]
            info["faces"] = faces
            if faces:
                info["skin"] = A.read_skin(rgb, faces[0])
        role = roles.get(s.prompt_id)
        if role is not None and "role" in attributes:
            info["object"] = A.detector_reading(rgb, role["dimension"])
        out.append(info)
    return out, bad


def _clip_probabilities(run: Path, samples: pd.DataFrame, readable: np.ndarray, extractor, classes: dict,
                        batch_size: int, progress: bool) -> dict[str, np.ndarray]:
    """{class-set name: [N, K] probabilities} for the readable images (NaN rows elsewhere)."""
    from bench.features import extract_features

    paths = list(samples["path"][readable])
    fs = extract_features([run / p for p in paths], extractor, run / C.FEATURES_DIR, batch_size=batch_size,
                          progress=progress, root=run)
    row_of = {p: i for i, p in enumerate(fs.paths)}
    emb = np.full((len(samples), fs.features.shape[1]), np.nan)
    for i in np.flatnonzero(readable):
        if samples["path"][i] in row_of:
            emb[i] = fs.features[row_of[samples["path"][i]]]
    ok = np.isfinite(emb).all(1)
    scale = A.logit_scale(extractor)
    out = {}
    for name, prompts in classes.items():
        probs = np.full((len(samples), len(prompts)), np.nan)
        if ok.any():
            probs[ok] = A.zero_shot(emb[ok], A.class_embeddings(extractor, prompts), scale)
        out[name] = probs
    return out


def _image_rows(samples: pd.DataFrame, pixels: list[dict], probs: dict[str, np.ndarray], attributes: tuple[str, ...],
                roles: Mapping[str, dict], face_gate: bool) -> pd.DataFrame:
    rows = []
    for i, s in enumerate(samples.itertuples(index=False)):
        info = pixels[i]
        base = {"image_id": s.image_id, "prompt_id": s.prompt_id, "prompt": s.prompt, "category": s.category,
                "guidance": s.guidance, "path": s.path}
        faces = info["faces"]
        face_extra = {"n_faces": -1 if faces is None else len(faces),
                      "face_prob": faces[0].prob if faces else math.nan}

        def add(attribute, method, value, score, reason="", **extra):
            judged = not info["problem"] and not reason and value is not None
            why = info["problem"] or reason or ("" if judged else "no reading (image features missing)")
            rows.append({**base, "attribute": attribute, "method": method, "value": value if judged else "",
                         "score": float(score) if judged else math.nan, "judged": judged, "reason": why,
                         **face_extra, **extra})

        role = roles.get(s.prompt_id)
        if "role" in attributes and role is not None:
            attribute = f"role_{role['dimension']}"
            p = probs.get(attribute)
            k = int(np.nanargmax(p[i])) if p is not None and np.isfinite(p[i]).all() else None
            classes = list(A.role_prompts(role["dimension"]))
            no_object = "" if info["object"] else NO_OBJECT
            add(attribute, CLIP_METHOD, None if k is None else classes[k], p[i, k] if k is not None else math.nan,
                no_object if face_gate else "")
            add(attribute, DETECTOR_METHOD, info["object"], 1.0, no_object)
        if role is not None and not set(attributes) & set(REAL_ATTRIBUTES):
            continue
        no_face = NO_FACE if faces is not None and not faces else ""
        for attribute, prompts in (("gender", A.GENDER_PROMPTS), ("age", A.AGE_PROMPTS)):
            if attribute not in attributes:
                continue
            p = probs[attribute][i]
            k = int(np.argmax(p)) if np.isfinite(p).all() else None
            add(attribute, CLIP_METHOD, None if k is None else list(prompts)[k], p[k] if k is not None else math.nan,
                no_face if face_gate else "")
        if "skin_tone" in attributes:
            skin = info["skin"]
            reason = no_face or ("" if skin is not None else NO_SKIN)
            extra = {"skin_fraction": skin.skin_fraction if skin else math.nan}
            add("skin_tone_ita", ITA_METHOD, skin.ita_class if skin else None, skin.ita if skin else math.nan,
                reason, **extra)
            add("skin_tone_monk", MONK_METHOD, skin.monk if skin else None, skin.lab[0] if skin else math.nan,
                reason, **extra)
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=TABLE_COLUMNS)
    order = TABLE_COLUMNS + [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[order]


# ------------------------------------------------------------------ statistics


def classes_of(attribute: str) -> tuple[str, ...]:
    from bench.world.vocab import COLOURS, SHAPES

    return {"gender": tuple(A.GENDER_PROMPTS), "age": tuple(A.AGE_PROMPTS), "skin_tone_ita": A.ITA_CLASSES,
            "skin_tone_monk": A.MONK_CLASSES, "role_colour": tuple(COLOURS), "role_shape": tuple(SHAPES)}[attribute]


def reference_shares(attribute: str, classes: Sequence[str], extra: Mapping[str, Any]) -> np.ndarray:
    """A prompt's reference share per class: BLS female share (gender), the corpus share (a role), else NaN."""
    ref = np.full(len(classes), np.nan)
    if attribute == "gender":
        pct = extra.get("bls_pct_female")
        if pct is not None and not (isinstance(pct, float) and math.isnan(pct)):
            ref[:] = [float(pct) / 100 if c == "female" else 1 - float(pct) / 100 for c in classes]
    elif attribute.startswith("role_") and _is_role(extra) and f"role_{extra['dimension']}" == attribute:
        major, minor = extra["values"][0], extra["values"][1]
        p = float(extra["p_major"])
        ref[:] = [p if c == major else (1 - p) if c == minor else 0.0 for c in classes]
    return ref


def _rows_of(level: str, group: str, prompt: str, category: str, attribute: str, method: str,
             classes: Sequence[str], agg) -> list[dict]:
    scores = {s: agg.scores[s][0] for s in SCORES}
    return [{"level": level, "group": group, "prompt": prompt, "category": category, "attribute": attribute,
             "method": method, "value": c, "n": int(agg.n), "k": int(agg.k[j]), "share": float(agg.share[j]),
             "ci_low": float(agg.ci_low[j]), "ci_high": float(agg.ci_high[j]), "ci_method": agg.ci_method,
             "reference_share": float(agg.reference[j]), "diff": float(agg.diff[j]),
             "diff_ci_low": float(agg.diff_ci_low[j]), "diff_ci_high": float(agg.diff_ci_high[j]), **scores}
            for j, c in enumerate(classes)]


def prompt_statistics(table: pd.DataFrame, samples: pd.DataFrame, extras: Mapping[str, dict], n_boot: int,
                      seed: int) -> tuple[pd.DataFrame, dict]:
    """BIAS_PROMPTS_TABLE rows and the overall aggregates {(attribute, method): (classes, Aggregate)}."""
    rows, overall = [], {}
    prompt_text = samples.drop_duplicates("prompt_id").set_index("prompt_id")
    for (attribute, method), part in table.groupby(["attribute", "method"], sort=False):
        classes = classes_of(attribute)
        pids = list(dict.fromkeys(part["prompt_id"]))
        judged = part[part["judged"]]
        counts = np.zeros((len(pids), len(classes)), np.int64)
        index = {p: i for i, p in enumerate(pids)}
        col = {c: j for j, c in enumerate(classes)}
        for pid, value in zip(judged["prompt_id"], judged["value"]):
            counts[index[pid], col[value]] += 1
        ref = np.stack([reference_shares(attribute, classes, extras.get(p, {})) for p in pids])
        cats = [str(prompt_text.at[p, "category"]) for p in pids]
        for i, agg in enumerate(prompt_rows(counts, ref, n_boot, seed)):
            rows += _rows_of("prompt", pids[i], str(prompt_text.at[pids[i], "prompt"]), cats[i], attribute, method,
                             classes, agg)
        for cat in dict.fromkeys(cats):
            sel = np.array([c == cat for c in cats])
            rows += _rows_of("category", cat, "", cat, attribute, method, classes,
                             bootstrap_groups(counts[sel], ref[sel], n_boot, seed))
        agg = bootstrap_groups(counts, ref, n_boot, seed)
        rows += _rows_of("overall", C.ALL_SUBSET, "", "", attribute, method, classes, agg)
        overall[(attribute, method)] = (classes, agg)
    frame = pd.DataFrame(rows, columns=PROMPT_COLUMNS) if rows else pd.DataFrame(columns=PROMPT_COLUMNS)
    return frame, overall


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _triple(value, lo, hi) -> list:
    return [_num(value), _num(lo), _num(hi)]


def calibration(table: pd.DataFrame, extras: Mapping[str, dict]) -> list[dict]:
    """Per role prompt: corpus, detector and CLIP shares of the major value with Wilson intervals,
    the CLIP's error on the images the detector judged, and whether the planted skew is recovered."""
    out = []
    for pid, part in table[table["attribute"].str.startswith("role_")].groupby("prompt_id", sort=False):
        extra = extras[pid]
        major, minor = extra["values"][0], extra["values"][1]
        p_major = float(extra["p_major"])
        det = part[part["method"] == DETECTOR_METHOD].set_index("image_id")
        clip = part[part["method"] == CLIP_METHOD].set_index("image_id")
        seen = det.index[det["judged"] & clip.loc[det.index, "judged"]]  # images both read
        d_vals, c_same = det.loc[seen, "value"], clip.loc[seen, "value"]
        c_all = clip.loc[clip["judged"], "value"]

        def share(values):
            n, k = len(values), int((values == major).sum())
            lo, hi = wilson_interval(k, n)
            return n, k, _triple(k / n if n else np.nan, lo, hi)

        def skew(values):
            """Major share among images showing the major or the minor value, with Wilson's interval."""
            k, m = int((values == major).sum()), int((values == minor).sum())
            lo, hi = wilson_interval(k, k + m)
            return _triple(k / (k + m) if k + m else np.nan, lo, hi)

        n_det, _, det_share = share(d_vals)
        _, _, clip_same = share(c_same)
        n_all, _, clip_all = share(c_all)
        err = None if det_share[0] is None else clip_same[0] - det_share[0]
        row = {"prompt_id": pid, "role": extra["role"], "dimension": extra["dimension"], "major": major,
               "minor": minor, "corpus_share": p_major, "n_images": int(len(clip)), "n_detected": n_det,
               "detector_share": det_share, "clip_share_same_images": clip_same, "clip_share_all": clip_all,
               "clip_minus_detector": _num(err),
               "within_tolerance": None if err is None else bool(abs(err) <= CALIBRATION_TOLERANCE + 1e-12),
               "agreement": _num((c_same == d_vals).mean()) if n_det else None,
               "amplification_detector": _triple(*(np.array(det_share, dtype=float) - p_major)),
               "amplification_clip": _triple(*(np.array(clip_all, dtype=float) - p_major)),
               "skew_detector": skew(d_vals), "skew_clip": skew(c_same)}
        for method in ("detector", "clip"):
            s = row[f"skew_{method}"]
            if s[0] is None:
                verdict = None
            elif p_major == 0.5:
                verdict = bool(s[1] <= 0.5 <= s[2])  # balanced control: no significant skew
            else:
                verdict = bool(s[1] > 0.5)           # the planted direction, significantly
            row[f"planted_recovered_{method}"] = verdict
        out.append(row)
    return out


# ------------------------------------------------------------------ summary


def summarise(table: pd.DataFrame, overall: dict, samples: pd.DataFrame, attributes: tuple[str, ...],
              pixels: list[dict], n_unreadable: int, calib: list[dict], options: dict) -> dict:
    """summary.json["bias"]: counts, the headline, every attribute's overall shares with intervals."""
    per_attr: dict[str, dict] = {}
    for (attribute, method), (classes, agg) in overall.items():
        per_attr.setdefault(attribute, {})[method] = {
            "n_judged": int(agg.n),
            "shares": {c: _triple(agg.share[j], agg.ci_low[j], agg.ci_high[j]) for j, c in enumerate(classes)},
            **{s: _triple(*agg.scores[s]) for s in SCORES},
            "reference": {c: _num(agg.reference[j]) for j, c in enumerate(classes) if np.isfinite(agg.reference[j])},
            "diff": {c: _triple(agg.diff[j], agg.diff_ci_low[j], agg.diff_ci_high[j])
                     for j, c in enumerate(classes) if np.isfinite(agg.diff[j])},
            "ci_method": agg.ci_method,
        }
    if "gender" in per_attr:
        head_attr, head_method = "gender", CLIP_METHOD
    else:
        role_attrs = sorted((a for a in per_attr if a.startswith("role_")),
                            key=lambda a: -table[table["attribute"] == a]["prompt_id"].nunique())
        head_attr = role_attrs[0] if role_attrs else next(iter(per_attr), None)
        head_method = CLIP_METHOD if head_attr and CLIP_METHOD in per_attr[head_attr] else \
            next(iter(per_attr.get(head_attr, {})), None)
    head = per_attr.get(head_attr, {}).get(head_method, {}).get("imbalance", [None, None, None])
    faces_ran = [p["faces"] is not None for p in pixels]
    judged = table[table["judged"]]
    summary = {
        "n_images": int(len(samples)),
        "n_prompts": int(samples["prompt_id"].nunique()),
        "n_judged": int(judged["image_id"].nunique()),
        "n_judged_by_attribute": {a: int(g["image_id"].nunique()) for a, g in judged.groupby("attribute")},
        "n_no_face": int(sum(ran and not p["faces"] and not p["problem"] for ran, p in zip(faces_ran, pixels)))
                     if any(faces_ran) else None,
        "n_unreadable": int(n_unreadable),
        "attributes": list(attributes),
        "headline_attribute": head_attr,
        "headline_method": head_method,
        "imbalance": head[0],
        "imbalance_ci": head[1:],
        "overall": per_attr,
        "clip": options.get("clip_key"),
        "face_detector": (f"facenet-pytorch MTCNN, face probability >= {A.MIN_FACE_PROB}"
                          if any(faces_ran) else None),
        "face_gate": bool(options.get("face_gate", True)),
        "bootstrap": int(options["n_boot"]),
        "seed": int(options["seed"]),
        "guidance": sorted({float(g) for g in samples["guidance"] if np.isfinite(g)}),
        "warnings": [],
    }
    if len(summary["guidance"]) > 1:
        summary["warnings"].append(f"images of {len(summary['guidance'])} guidance scales are pooled per prompt")
    if summary["n_no_face"] is not None and summary["n_no_face"] == summary["n_images"] - n_unreadable:
        summary["warnings"].append("MTCNN found no face in any image: gender, age and skin tone are not judged")
    if calib:
        summary["calibration"] = {
            "tolerance": CALIBRATION_TOLERANCE,
            "roles": calib,
            "all_within_tolerance": all(r["within_tolerance"] for r in calib if r["within_tolerance"] is not None),
            "agreement_by_dimension": {
                d: _num(np.mean([r["agreement"] for r in calib if r["dimension"] == d and r["agreement"] is not None]))
                for d in dict.fromkeys(r["dimension"] for r in calib)},
        }
        summary["amplification"] = {}
        for method in ("clip", "detector"):  # mean over skewed roles of (majority share - corpus share)
            amp = [r[f"amplification_{method}"][0] for r in calib
                   if r["corpus_share"] != 0.5 and r[f"amplification_{method}"][0] is not None]
            summary["amplification"][CLIP_METHOD if method == "clip" else DETECTOR_METHOD] = \
                _num(np.mean(amp)) if amp else None
        for r in calib:
            if r["within_tolerance"] is False:
                summary["warnings"].append(
                    f"{r['role']} ({r['dimension']}): CLIP share {r['clip_share_same_images'][0]:.3f} vs detector "
                    f"{r['detector_share'][0]:.3f} on the same {r['n_detected']} images, off by more than "
                    f"{CALIBRATION_TOLERANCE:.2f}")
    return summary


# ------------------------------------------------------------------ the audit


def audit_bias(run, *, attributes: str | Sequence[str] | None = AUTO, clip: str | None = None,
               prompts: str | None = None, n_boot: int = MIN_BOOTSTRAP, seed: int = 0, face_gate: bool = True,
               batch_size: int = 64, progress: bool = True) -> BiasResult:
    """Audit run directory ``run`` for social bias and write the outputs (module docstring)."""
    if n_boot < MIN_BOOTSTRAP:
        raise UserError(f"--bootstrap must be at least {MIN_BOOTSTRAP} resamples, got {n_boot}")
    requested = parse_attributes(attributes)
    run = Path(run)
    samples = load_run_samples(run)
    samples["category"] = samples["category"].fillna("").astype(str)
    prompt_ids = list(dict.fromkeys(samples["prompt_id"]))
    extras = _prompt_extras(run, prompts, set(prompt_ids))
    chosen = resolve_attributes(requested, extras, prompt_ids)
    roles = {p: extras[p] for p in prompt_ids if _is_role(extras.get(p, {}))}
    n_run = len(samples)
    if chosen == ("role",):  # a role audit reads role prompts only; the others are counted
        samples = samples[samples["prompt_id"].isin(roles)].reset_index(drop=True)
    spec = resolve_clip(clip, chosen)
    extractor = None
    if spec is not None:
        from bench.features import get_extractor

        extractor = get_extractor(spec)  # an uncached backbone fails here, before any image is read

    pixels, n_bad = _read_pixels(run, samples, chosen, roles, progress)
    readable = np.array([not p["problem"] for p in pixels])
    if not readable.any():
        raise UserError(f"no image of run '{run}' could be read; regenerate or re-import the images")
    classes: dict[str, dict] = {}
    if "gender" in chosen:
        classes["gender"] = A.GENDER_PROMPTS
    if "age" in chosen:
        classes["age"] = A.AGE_PROMPTS
    if "role" in chosen:
        for dim in dict.fromkeys(r["dimension"] for r in roles.values()):
            classes[f"role_{dim}"] = A.role_prompts(dim)
    probs = _clip_probabilities(run, samples, readable, extractor, classes, batch_size, progress) if classes else {}

    table = _image_rows(samples, pixels, probs, chosen, roles, face_gate)
    prompt_table, overall = prompt_statistics(table, samples, extras, n_boot, seed)
    calib = calibration(table, extras) if "role" in chosen else []
    summary = summarise(table, overall, samples, chosen, pixels, n_bad, calib,
                        {"clip_key": getattr(extractor, "key", None), "face_gate": face_gate, "n_boot": n_boot,
                         "seed": seed})
    summary["n_images_not_audited"] = n_run - len(samples)
    from audit.probes.bias import PROBE

    C.write_table(run, C.BIAS_TABLE, table)
    C.write_table(run, C.BIAS_PROMPTS_TABLE, prompt_table)
    PROBE.record(run, summary)
    return BiasResult(table, prompt_table, summary)
