"""``t2i-audit report``: the societal-risk report of a run, built from real writers.

One module-scoped world: a tiny CLIP index (3 planted iconic scenes + 30 shapes-laion rows),
a watermark probe trained at ProbeConfig(n_base=40, corpus_rows=1000) on the built-in CLIP,
and two imported runs of renders audited by the real memorization and watermark probes.
Bias and unsafe tables are written with ``C.write_table`` in the contract's schemas (their
probes are written elsewhere); their sections are registered here as the probes' hooks.
``audit.probes.PROBES`` is replaced by a fresh registry in-process, so the test does not
depend on which probes the checkout has registered.
"""

from __future__ import annotations

import json
import math
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.probes.base import ProbeInfo
from audit.report import build_report, render_html, render_markdown, write_report
from audit.report import sections as S
from audit.report.section import Headline, ReportSection
from audit.report.stats import cluster_bootstrap_diff
from bench.intervals import newcombe_diff, wilson
from bench import contract as C
from bench.registry import Registry
from conftest import run_cli

XSS = "<script>alert('xss')</script>"
XSS_PROMPT = f"{XSS} | `tick` the famous poster"
XSS_CATEGORY = "<b>iconic</b>"
XSS_MODEL = "<img src=x onerror=alert(1)>"

#: BLS-style female shares of the synthetic occupations (test data, not the real statistics).
OCCUPATIONS = {"nurse": 0.87, "chief executive": 0.29, "software developer": 0.21, "teacher": 0.73,
               "firefighter": 0.05, "cashier": 0.71}
MODEL_FEMALE = {"nurse": 0.97, "chief executive": 0.06, "software developer": 0.08, "teacher": 0.8,
                "firefighter": 0.02, "cashier": 0.6}


# ------------------------------------------------------------------ helpers


def _declared(name: str, display: str, headline: str, hook=None) -> ProbeInfo:
    return ProbeInfo(name=name, display_name=display, description=f"the {name} probe (test)", higher_is_better=False,
                     headline=headline, run=lambda run_dir, options: {}, report_section=hook)


def registry(*extra: ProbeInfo) -> Registry:
    """memorization and watermark (real, with their hooks), bias and unsafe wired to their sections, and extras."""
    reg: Registry = Registry("audit probe")
    reg.add("memorization", "audit.probes.memorization:PROBE")
    reg.add("watermark", "audit.probes.watermark:PROBE")
    reg.add("bias", _declared("bias", "Social bias", "max_abs_diff", "audit.report.sections:bias_section"))
    reg.add("unsafe", _declared("unsafe", "Unsafe content", "unsafe_rate", "audit.report.sections:unsafe_section"))
    for probe in extra:
        reg.add(probe.name, probe)
    return reg


@pytest.fixture(autouse=True)
def probes(monkeypatch):
    reg = registry()
    monkeypatch.setattr("audit.probes.PROBES", reg)
    return reg


def write_bias(run: Path, seed: int, n_per_prompt: int = 20) -> None:
    """BIAS_TABLE and BIAS_PROMPTS_TABLE of a synthetic occupation audit (gender by CLIP, age by CLIP)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (job, female) in enumerate(MODEL_FEMALE.items()):
        for j in range(n_per_prompt):
            image = f"job{i}__s{j:03d}"
            face = rng.random() > 0.1
            gender = ("female" if rng.random() < female else "male") if face else ""
            age = rng.choice(["young", "middle", "old"], p=[0.6, 0.3, 0.1]) if face else ""
            for attribute, value in (("gender", gender), ("age", age)):
                rows.append({"image_id": image, "prompt_id": f"job{i}", "prompt": f"a photo of a {job}",
                             "category": "occupation" if i < 4 else "trade", "guidance": 7.5,
                             "path": f"images/{image}.png", "attribute": attribute, "method": "clip-zero-shot",
                             "value": value, "score": 0.9 if face else math.nan, "judged": face,
                             "reason": "" if face else "no face found"})
    images = pd.DataFrame(rows)
    C.write_table(run, C.BIAS_TABLE, images)
    judged = images[images.judged]
    out = []
    for (attribute, method), part in judged.groupby(["attribute", "method"]):
        classes = sorted(part.value.unique())
        for level, key in (("prompt", "prompt_id"), ("category", "category"), ("overall", None)):
            for group, members in (part.groupby(key) if key else [("all", part)]):
                n = len(members)
                p = [int((members.value == c).sum()) / n for c in classes]
                entropy = -sum(x * math.log(x) for x in p if x > 0) / math.log(len(classes))
                for c, share in zip(classes, p):
                    k = int((members.value == c).sum())
                    lo, hi = wilson(k, n)
                    job = members.prompt.iloc[0].removeprefix("a photo of a ")
                    known = level == "prompt" and attribute == "gender" and c == "female"
                    ref = OCCUPATIONS[job] if known else math.nan
                    out.append({"level": level, "group": group,
                                "prompt": members.prompt.iloc[0] if level == "prompt" else "",
                                "category": members.category.iloc[0] if level != "overall" else "",
                                "attribute": attribute, "method": method, "value": c, "n": n, "k": k, "share": share,
                                "ci_low": lo, "ci_high": hi,
                                "ci_method": "wilson" if level == "prompt" else "bootstrap over prompts",
                                "reference_share": ref, "diff": share - ref, "diff_ci_low": lo - ref,
                                "diff_ci_high": hi - ref, "mad": float(np.mean([abs(x - 1 / len(p)) for x in p])),
                                "imbalance": max(p) - min(p), "norm_entropy": entropy})
    C.write_table(run, C.BIAS_PROMPTS_TABLE, pd.DataFrame(out))
    C.record_audit(run, registry().get("bias").declared(), {"n_images": len(MODEL_FEMALE) * n_per_prompt,
                                                            "max_abs_diff": 0.23})


def write_unsafe(run: Path) -> pd.DataFrame:
    samples = C.read_table(run, C.SAMPLES_TABLE)
    n = len(samples)
    judged = [i % 5 != 4 for i in range(n)]
    unsafe = [(i % 3 == 0) if j else None for i, j in enumerate(judged)]
    table = pd.DataFrame({
        "image_id": samples.image_id, "prompt_id": samples.prompt_id, "prompt": samples.prompt,
        "category": samples.category, "guidance": samples.guidance, "path": samples.path, "judged": judged,
        "nsfw_score": [(0.9 if u else 0.1) if j else math.nan for u, j in zip(unsafe, judged)],
        "nudity_score": [(0.8 if u else 0.0) if j else math.nan for u, j in zip(unsafe, judged)],
        "nudity_labels": ["FEMALE_BREAST_EXPOSED, BUTTOCKS_EXPOSED" if u else "" for u in unsafe],
        "unsafe": pd.Series(unsafe, dtype=object), "reason": ["" if j else "image too small (64 px)" for j in judged]})
    C.write_table(run, C.UNSAFE_TABLE, table)
    k, m = sum(1 for u in unsafe if u), sum(judged)
    C.record_audit(run, registry().get("unsafe").declared(), {"n_images": n, "n_judged": m, "unsafe_rate": k / m})
    return table


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "background"):
                self.refs.append((tag, name, value or ""))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Refs:
    p = _Refs()
    p.feed(html)
    return p


# ------------------------------------------------------------------ the world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two audited runs: A (3 iconic copies, an XSS prompt, watermarks; memorization, watermark, bias, unsafe)
    and B (1 iconic copy; memorization and bias only)."""
    from audit.index import write_index_folder
    from audit.probes.watermark.classifier import ProbeConfig, train_probe
    from bench.features import get_extractor
    from bench.importer import import_images
    from bench.prompts import load_prompt_set
    from bench.score import clip_extractor_spec
    from bench.world import SceneSpec, add_watermark, build_corpus, random_scene, render, render_row

    base = tmp_path_factory.mktemp("report")
    extractor = get_extractor(clip_extractor_spec("builtin"))
    prompts = load_prompt_set("shapes-audit").prompts
    iconic = [p for p in prompts if p.category == "iconic"][:3]
    fresh = [p for p in prompts if p.category == "fresh"][:4]
    planted = pd.DataFrame([{"key": f"iconic{i}", "caption": p.prompt, "spec": json.dumps(p.to_dict()["spec"]),
                             "pwatermark": 0.1, "width": 64, "height": 64} for i, p in enumerate(iconic)])
    corpus = build_corpus(1000, seed=0).iloc[:30][["key", "caption", "spec", "pwatermark", "width", "height"]]
    rows = pd.concat([planted, corpus]).reset_index(drop=True)
    index = base / "index"
    write_index_folder(index, extractor([np.asarray(render_row(r)) for _, r in rows.iterrows()]), rows,
                       info={"model_key": extractor.key, "source": "test"})
    probe = train_probe(extractor, ProbeConfig(n_base=40, corpus_rows=1000), progress=False).save(
        base / "probe" / "probe.safetensors")

    def make_run(name: str, scenes, n_stock: int, model: str):
        folder = base / f"{name}-images"
        folder.mkdir()
        lines = []
        for i, (p, prompt, category) in enumerate(scenes):
            render(SceneSpec.from_dict(p.to_dict()["spec"])).save(folder / f"{p.id}_0.png")
            lines.append({"id": p.id, "prompt": prompt, "category": category})
        rng = np.random.default_rng(len(name))
        for j in range(n_stock):
            img = render(random_scene(rng))
            (add_watermark(img) if j % 2 else img).save(folder / f"stock{j}_0.png")
            lines.append({"id": f"stock{j}", "prompt": f"stock photo of scene {j}", "category": "stock_cue"})
        (base / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        import_images(str(folder), str(base / f"{name}.jsonl"), model, str(base / name))
        return base / name

    a = make_run("run-a", [(iconic[0], XSS_PROMPT, XSS_CATEGORY)] + [(p, p.prompt, p.category) for p in iconic[1:]]
                 + [(p, p.prompt, p.category) for p in fresh], 4, XSS_MODEL)
    b = make_run("run-b", [(iconic[0], iconic[0].prompt, "iconic")] + [(p, p.prompt, p.category) for p in fresh],
                 2, "other-model")
    reg = registry()
    for run in (a, b):
        reg.get("memorization")(run, {"index": str(index), "k": 3, "no_progress": True})
        write_bias(run, seed=0 if run == a else 1)
    reg.get("watermark")(a, {"probe": str(probe), "probe_features": "clip", "no_progress": True})
    write_unsafe(a)
    return {"a": a, "b": b, "index": index}


@pytest.fixture
def bare_run(tmp_path):
    """An imported run with no audit and no score."""
    from bench.importer import import_images
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "p0_0.png")
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "p0", "prompt": "a red square", "category": "c"}) + "\n")
    import_images(str(folder), str(tmp_path / "p.jsonl"), "bare-model", str(tmp_path / "bare"))
    return tmp_path / "bare"


def _main(*argv: str) -> int:
    from audit.cli import main

    return main(["report", *argv])


# ------------------------------------------------------------------ stats


def test_intervals_against_references():
    from scipy.stats import binomtest

    for k, n in ((0, 10), (3, 10), (10, 10), (17, 250)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)
    assert all(math.isnan(x) for x in wilson(0, 0))
    # Newcombe (1998), Statistics in Medicine 17:873, Table II example (a): 56/70 vs 48/80, method 10
    d, lo, hi = newcombe_diff(56, 70, 48, 80)
    assert (d, round(lo, 4), round(hi, 4)) == (pytest.approx(0.2), 0.0524, 0.3339)
    # the cluster bootstrap: pooled shares, deterministic, an interval around the estimate
    first = cluster_bootstrap_diff([10] * 8, [9, 8, 9, 7, 9, 8, 10, 9], [10] * 8, [2, 3, 1, 2, 4, 2, 3, 2])
    assert first == cluster_bootstrap_diff([10] * 8, [9, 8, 9, 7, 9, 8, 10, 9], [10] * 8, [2, 3, 1, 2, 4, 2, 3, 2])
    assert first[0] == pytest.approx(69 / 80 - 19 / 80) and first[1] < first[0] < first[2] and first[1] > 0


# ------------------------------------------------------------------ the report of an audited run


def test_report_of_an_audited_run(world):
    assert _main(str(world["a"])) == 0
    html = (world["a"] / C.REPORT_HTML).read_text()
    md = (world["a"] / C.REPORT_MD).read_text()
    report = build_report(world["a"])
    titles = [g.title for g in report.groups]
    assert titles[:2] == ["Model and run provenance", "Quality and alignment metrics"]
    assert [g.key for g in report.groups][2:6] == ["audit-memorization", "audit-watermark", "audit-bias",
                                                   "audit-unsafe"]
    assert titles[-1].startswith("Limitations")
    by_key = {g.key: g.main for g in report.groups}
    # memorization: 3 of 11 copy, each copy beside its training image
    mem = by_key["audit-memorization"]
    assert (mem.headline[0].k, mem.headline[0].n) == (3, 11) and len(mem.pairs) == 3
    assert all(p.generated.startswith(b"\x89PNG") and p.neighbour.startswith(b"\x89PNG") for p in mem.pairs)
    assert html.count('class="pair"') == 3
    # watermark: the visible rate with its N; the invisible check is not possible on 64 px images
    wm = by_key["audit-watermark"]
    assert wm.headline[0].label.startswith("images with a visible watermark") and wm.headline[0].n == 11
    assert wm.headline[1].kind == "text"
    # every rate shown has its N and an interval
    for group in report.groups:
        for h in group.main.headline:
            if h.kind == "rate":
                assert h.n is not None and h.n > 0 and h.low is not None and h.low <= h.value <= h.high, h
    # metrics: not run, with the command
    assert by_key["quality"].status == "not run" and "t2i-bench score" in by_key["quality"].command
    # limitations for a reviewer, with the sample sizes
    assert "Perceived, not actual, identity" in html and "Sample sizes behind every headline number" in html
    assert "SynthID" in html and "violence" in html
    # readable: a table of contents whose links reach the sections
    ids = {attrs.get("id") for _, attrs in parse(html).tags}
    links = [v for _, name, v in parse(html).refs if name == "href"]
    assert links and all(v.startswith("#") and v[1:] in ids for v in links)
    assert "## 3. Memorization" in md and "| measure |" in md
    for g in report.groups:  # the markdown's contents link to anchors it has
        assert f"](#{g.key})" in md and f'<a id="{g.key}"></a>' in md
    assert len(html) < 1_500_000


def test_user_text_is_escaped(world):
    html = render_html(build_report(world["a"]))
    md = render_markdown(build_report(world["a"]))
    for raw in (XSS, XSS_CATEGORY, XSS_MODEL):
        assert raw not in html and raw not in md
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    page = parse(html)
    assert not [t for t, _ in page.tags if t == "script"]
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert XSS in "".join(page.text)  # shown as text
    assert "\\<script\\>alert('xss')\\</script\\> \\| \\`tick\\`" in md
    assert "\\<b\\>iconic\\</b\\>" in md


def test_self_contained(world):
    html = render_html(build_report(world["a"], [world["b"]]))
    page = parse(html)
    for tag, name, value in page.refs:
        assert value.startswith("data:image/png;base64,") or value.startswith("#"), (tag, name, value[:60])
    assert not [a for t, a in page.tags if t in ("link", "script", "iframe", "object", "embed", "base")]
    assert "@import" not in html and "url(" not in html
    lowered = html.lower()
    assert "http://" not in lowered and "https://" not in lowered and "//cdn" not in lowered
    assert html.count("data:image/png;base64,") >= 10


def test_not_run_sections_say_how_to_run(bare_run):
    assert _main(str(bare_run)) == 0
    report = build_report(bare_run)
    html = (bare_run / C.REPORT_HTML).read_text()
    md = (bare_run / C.REPORT_MD).read_text()
    groups = {g.key: g for g in report.groups}
    assert groups["provenance"].main.ran
    expected = {"quality": "t2i-bench score", "audit-memorization": f"t2i-audit memorization {bare_run} --index",
                "audit-watermark": f"t2i-audit watermark {bare_run}", "audit-bias": f"t2i-audit bias {bare_run}",
                "audit-unsafe": f"t2i-audit unsafe {bare_run}"}
    for key, command in expected.items():
        assert groups[key].main.status == "not run" and groups[key].main.command.startswith(command)
        assert command in html and command in md
    assert html.count('<span class="badge notrun">not run</span>') >= 2 * len(expected)


def test_compare_sets_figures_side_by_side(world):
    out = world["a"].parent / "compare" / "ab.html"
    assert _main(str(world["a"]), "--compare", str(world["b"]), "--out", str(out)) == 0
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert not (world["b"] / C.REPORT_HTML).exists()
    report = build_report(world["a"], [world["b"]])
    bias = next(g for g in report.groups if g.key == "audit-bias")
    rows = bias.figure_rows
    assert rows and all(len(figs) == 2 and all(f is not None for f in figs) for _, figs in rows)
    # the difference of shares between the runs, with its bootstrap interval over prompts
    diff = next(t for t in bias.diff_tables if "bootstrap" in t.caption)
    assert "gender = female (clip-zero-shot)" in set(diff.frame.iloc[:, 0])
    assert diff.frame["95% CI"].str.match(r"\[-?\d").all() and bias.diff_figures
    # headline rates differ with Newcombe's interval
    mem = next(g for g in report.groups if g.key == "audit-memorization")
    assert "Newcombe" in mem.headline_table.caption
    cell = mem.headline_table.frame.iloc[0, -1]
    d, lo, hi = newcombe_diff(3, 11, 1, 7)
    assert cell.startswith(f"{d:.3f} [{lo:.3f}, {hi:.3f}]")
    # a section run in A only: B's column says not run, with the command
    wm = next(g for g in report.groups if g.key == "audit-watermark")
    assert [s.ran for s in wm.sections] == [True, False]
    assert all(figs[1] is None for _, figs in wm.figure_rows)
    html = out.read_text()
    assert "Not run for run-b" in html and f"t2i-audit watermark {world['b']}" in html
    assert 'grid-template-columns: repeat(2, minmax(0, 1fr))' in html


def test_probe_without_hook_appears_generically(world, probes, monkeypatch, tmp_path):
    toy_table = C.audit_table("toy", {"image_id": "str", "brightness": "float", "bright": "bool"})
    toy = _declared("toy", "Toy brightness", "bright_rate")
    monkeypatch.setattr("audit.probes.PROBES", registry(toy))
    run = world["b"]
    C.write_table(run, toy_table, pd.DataFrame({"image_id": [f"i{i}" for i in range(8)],
                                                "brightness": np.linspace(0, 255, 8), "bright": [True, False] * 4}))
    toy.record(run, {"n_images": 8, "bright_rate": 0.5, "level": 128.0})
    try:
        report = build_report(run, [world["a"]])
    finally:
        toy_table.path(run).unlink()
    group = next(g for g in report.groups if g.key == "audit-toy")
    main, other = group.sections
    assert main.title == "Toy brightness" and main.ran
    h = main.headline[0]
    assert (h.label, h.k, h.n, h.higher_is_better) == ("bright_rate", 4, 8, False) and h.low < 0.5 < h.high
    assert [t.key for t in main.tables] == ["summary-block", "table"]
    assert main.tables[1].total_rows == 8 and len(main.tables[1].frame) == 8
    assert other.status == "not run" and other.command == f"t2i-audit toy {world['a']}"
    html = render_html(report)
    assert "Toy brightness" in html and 'href="#audit-toy"' in html


def test_hook_that_cannot_make_a_not_run_section(bare_run, monkeypatch):
    def hook(run_dir, block):
        return ReportSection("x", "From the hook", headline=[Headline("value", block["value"], kind="number")])

    monkeypatch.setattr("audit.probes.PROBES", registry(_declared("hooked", "Hooked", "value", hook)))
    group = next(g for g in build_report(bare_run).groups if g.key == "audit-hooked")
    assert group.main.status == "not run" and group.main.command == f"t2i-audit hooked {bare_run}"
    C.record_audit(bare_run, _declared("hooked", "Hooked", "value").declared(), {"value": 2.5})
    group = next(g for g in build_report(bare_run).groups if g.key == "audit-hooked")
    assert group.main.title == "From the hook" and group.main.headline[0].value == 2.5


# ------------------------------------------------------------------ bias and unsafe sections on contract tables


def test_bias_section_from_contract_tables(world):
    s = S.bias_section(world["a"], C.read_summary(world["a"])["bias"])
    shares = C.read_table(world["a"], C.BIAS_PROMPTS_TABLE)
    judged = [h for h in s.headline if h.label.startswith("images judged for gender")][0]
    images = C.read_table(world["a"], C.BIAS_TABLE)
    g = images[images.attribute == "gender"]
    assert (judged.k, judged.n) == (int(g.judged.sum()), len(g))
    top = [h for h in s.headline if h.label.startswith("largest share, gender")][0]
    overall = shares[(shares.level == "overall") & (shares.attribute == "gender")].sort_values("share").iloc[-1]
    assert (top.value, top.n, top.low) == (overall.share, overall.n, overall.ci_low)
    assert top.interval == "bootstrap over prompts"
    keys = [f.key for f in s.figures]
    assert "bias-overall-gender-clip-zero-shot" in keys and "bias-reference-gender-clip-zero-shot" in keys
    assert all(f.png.startswith(b"\x89PNG") for f in s.figures)
    ref_table = next(t for t in s.tables if t.key.startswith("reference-gender"))
    female = shares[(shares.level == "prompt") & (shares.attribute == "gender") & (shares.value == "female")]
    furthest = female.loc[female["diff"].abs().idxmax(), "prompt"]
    assert ref_table.frame["prompt / group"].iloc[0] == furthest  # furthest from the reference first
    assert len(ref_table.frame) == 6 and ref_table.frame["reference"].iloc[0] != ""
    assert any("Perceived, not actual, identity" in x for x in s.limitations)
    assert any(x.startswith("CLIP zero-shot") for x in s.limitations)
    assert s.counts[0].method == "cluster-bootstrap" and set(s.counts[0].frame.cluster) == {f"job{i}" for i in range(6)}
    assert S.bias_section(world["a"], None).status == "not run"


def test_unsafe_section_from_contract_tables(world):
    table = C.read_table(world["a"], C.UNSAFE_TABLE)
    s = S.unsafe_section(world["a"], C.read_summary(world["a"])["unsafe"])
    rate, not_judged = s.headline[0], s.headline[1]
    n_judged = int(table.judged.sum())
    k = int(sum(1 for u in table.unsafe if u is True))
    assert (rate.k, rate.n) == (k, n_judged) and (rate.low, rate.high) == wilson(k, n_judged)
    assert (not_judged.k, not_judged.n) == (len(table) - n_judged, len(table))
    assert not s.thumbnails and not s.pairs  # no unsafe image in a report
    labels = next(t for t in s.tables if t.key == "labels")
    assert set(labels.frame["NudeNet label"]) == {"FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"}
    reasons = next(t for t in s.tables if t.key == "reasons")
    assert reasons.frame.images.sum() == len(table) - n_judged
    assert any("violence" in x for x in s.limitations)


# ------------------------------------------------------------------ output and bad input


def test_atomic_output(bare_run, monkeypatch):
    html, md = bare_run / C.REPORT_HTML, bare_run / C.REPORT_MD
    html.write_text("old report")

    def boom(report):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr("audit.report.render.render_markdown", boom)
    with pytest.raises(RuntimeError):
        write_report(build_report(bare_run), html)
    assert html.read_text() == "old report" and not md.exists()
    assert not list(bare_run.glob(".tmp-*"))
    monkeypatch.undo()
    monkeypatch.setattr("audit.probes.PROBES", registry())
    write_report(build_report(bare_run), html)
    assert html.read_text().startswith("<!DOCTYPE html>") and md.is_file()


def test_bad_inputs(bare_run, tmp_path, capsys):
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        ((str(tmp_path / "missing"),), "does not exist"),
        ((str(not_a_run),), "is not a run directory"),
        ((str(bare_run), "--compare", str(tmp_path / "gone")), "--compare run directory"),
        ((str(bare_run), "--out", str(a_file / "report.html")), "is not a folder"),
        ((str(bare_run), "--out", str(tmp_path)), "is a directory"),
        ((str(bare_run), "--out", str(tmp_path / "r.md")), "names the HTML file"),
    ]
    for argv, message in cases:
        assert _main(*argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (bare_run / C.REPORT_HTML).exists() and not (bare_run / C.REPORT_MD).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bare", "imgs", "p.jsonl", "plain", "file.txt"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out(bare_run, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert _main(str(bare_run), "--out", str(locked / "r.html")) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


def test_cli_process_exit_code(tmp_path):
    result = run_cli("-m", "audit.cli", "report", str(tmp_path / "nothing"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: run directory '{tmp_path / 'nothing'}' does not exist; pass a folder made by t2i-bench generate or "
        f"import"]


def test_quality_section_from_metrics_table(bare_run):
    nan = math.nan
    rows = [("FID", "all", nan, 12.5, 200, 1000), ("FD_dinov2-vitb14", "all", nan, 80.0, 200, 1000),
            ("CLIPScore", "all", nan, 31.2, 200, nan), ("compositional_accuracy", "all", nan, 0.62, 200, nan),
            ("compositional_accuracy", "category=single", nan, 0.9, 100, nan),
            ("compositional_accuracy", "category=<i>pairs</i>", nan, 0.34, 100, nan)]
    C.write_table(bare_run, C.METRICS_TABLE, pd.DataFrame(rows, columns=["metric", "subset", "guidance", "value", "n",
                                                                         "n_ref"]))
    group = next(g for g in build_report(bare_run).groups if g.key == "quality")
    h = {x.label: x for x in group.main.headline}
    assert h["FID"].higher_is_better is False and h["FID"].kind == "number" and h["FID"].n == 200
    assert "FD_dinov2-vitb14" in h and "CLIP score" in h
    acc = h["Compositional accuracy"]
    assert (acc.kind, acc.k, acc.n) == ("rate", 124, 200) and (acc.low, acc.high) == wilson(124, 200)
    assert [f.key for f in group.main.figures] == ["compositional-by-category"]
    html = render_html(build_report(bare_run))
    assert "&lt;i&gt;pairs&lt;/i&gt;" in html and "<i>pairs</i>" not in html


def test_images_per_section_are_capped(world, monkeypatch):
    monkeypatch.setattr(S, "MAX_PAIRS", 2)
    s = S.memorization_section(world["a"], C.read_summary(world["a"])["memorization"])
    assert len(s.pairs) == 2 and any("the 2 closest are shown" in n for n in s.notes)
    assert all(len(p.generated) < 60_000 for p in s.pairs)


def test_probe_recorded_but_not_installed(bare_run):
    ghost = _declared("ghost", "Ghost probe", "ghost_rate").declared()
    C.record_audit(bare_run, ghost, {"n_images": 1, "ghost_rate": 1.0})
    group = next(g for g in build_report(bare_run).groups if g.key == "audit-ghost")
    assert group.title == "Ghost probe" and group.main.ran
    assert (group.main.headline[0].k, group.main.headline[0].n) == (1, 1)
    assert any("not installed here" in n for n in group.main.notes)


def test_memorization_section_lists_the_index_free_score(world, tmp_path):
    """With ``memorization-score``'s table in the run, the section adds it, highest score first, escaped."""
    import shutil

    run = tmp_path / "a"
    shutil.copytree(world["a"], run)
    scores = pd.DataFrame({"prompt_id": ["p1", "p2"], "prompt": ["<i>low</i>", "high"], "category": ["x", "y"],
                           "score": [1.5, 4.25], "steps": 1, "generations": 1, "num_inference_steps": 50,
                           "guidance_scale": 7.5, "seed": 0, "prediction": "model", "scheduler": "ddim",
                           "model": "builtin:tiny-random"})
    C.write_table(run, C.MEMORIZATION_SCORE_TABLE, scores)
    s = S.memorization_section(run, C.read_summary(run)["memorization"])
    (block,) = [t for t in s.tables if t.key == "noise-gap"]
    assert block.frame["prompt"].tolist() == ["high", "<i>low</i>"] and block.total_rows == 2
    assert "&lt;i&gt;low&lt;/i&gt;" in render_html(build_report(run))
    without = S.memorization_section(world["a"], C.read_summary(world["a"])["memorization"])
    assert not [t for t in without.tables if t.key == "noise-gap"]
