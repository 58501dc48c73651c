"""Memorization audit end to end on the built-in world: exact iconic renders are flagged, fresh scenes are not.

One small shapes-laion:300 index (every iconic group kept) and one imported run
of renders are built per module; the audit itself takes seconds.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from audit.probes.memorization.run import PROMPT_COLUMNS, TABLE_COLUMNS, audit_memorization, copy_verdict, per_prompt_table
from bench.errors import UserError
from conftest import REPO, run_cli

N_ICONIC, N_FRESH = 4, 4


def _scene(prompt):
    from bench.world import SceneSpec

    return SceneSpec.from_dict(prompt.to_dict()["spec"])


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from audit.index import build_index

    out = tmp_path_factory.mktemp("index") / "shapes-laion-300"
    build_index("shapes-laion:300", out, "builtin", progress=False)
    return out


@pytest.fixture(scope="module")
def audit_prompts():
    from bench.prompts import load_prompt_set

    ps = load_prompt_set("shapes-audit").prompts
    iconic = [p for p in ps if p.category == "iconic"][:N_ICONIC]
    fresh = [p for p in ps if p.category == "fresh"][:N_FRESH]
    return iconic, fresh


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, audit_prompts):
    """An imported run: exact renders of 4 iconic scenes and of 4 fresh scenes (two samples of the first)."""
    from bench.importer import import_images
    from bench.world import render

    base = tmp_path_factory.mktemp("memo")
    images = base / "images"
    images.mkdir()
    iconic, fresh = audit_prompts
    for p in iconic + fresh:
        render(_scene(p)).save(images / f"{p.id}_0.png")
    render(_scene(iconic[0])).save(images / f"{iconic[0].id}_1.png")
    import_images(str(images), "shapes-audit", "renders", str(base / "run"))
    return base / "run"


@pytest.fixture(scope="module")
def audited(run_dir, index_dir):
    return audit_memorization(run_dir, index_dir, k=3, progress=False)


def test_copies_flagged_fresh_not(audited, audit_prompts):
    iconic, fresh = audit_prompts
    table = audited.table
    per_image = table.groupby("image_id").agg(category=("category", "first"), is_copy=("is_copy", "any"),
                                              best=("copy_distance", "min"))
    assert per_image[per_image.category == "iconic"].is_copy.all()
    assert not per_image[per_image.category == "fresh"].is_copy.any()
    # an exact render is its training image pixel for pixel; its top-1 is that image, with its caption
    top1 = table[(table["rank"] == 0) & (table.category == "iconic")]
    assert (top1.copy_distance == 0).all() and (top1.clip_cosine > 0.99).all()
    assert (top1.neighbour_caption == top1.prompt).all()
    # a fresh scene is far from everything in the strict distance, whatever CLIP says
    assert per_image[per_image.category == "fresh"].best.min() > audited.summary["thresholds"]["copy_distance"]


def test_output_schema_and_summary(audited, run_dir):
    table = pd.read_parquet(run_dir / "audit" / "memorization.parquet")
    assert list(table.columns) == TABLE_COLUMNS
    n_images = N_ICONIC + N_FRESH + 1
    assert len(table) == n_images * 3 and table.groupby("image_id")["rank"].apply(list).map(sorted).eq([[0, 1, 2]] * n_images).all()
    assert table.is_copy.dtype == bool and table.neighbour_id.dtype == np.int64
    # top-1 neighbour images are saved as PNG under audit/neighbours/, and exist
    top1 = table[table["rank"] == 0]
    assert top1.neighbour_path.str.startswith("audit/neighbours/").all()
    assert all((run_dir / p).is_file() for p in table.neighbour_path if p)
    prompts = pd.read_parquet(run_dir / "audit" / "memorization_prompts.parquet")
    assert list(prompts.columns) == PROMPT_COLUMNS and len(prompts) == N_ICONIC + N_FRESH
    first = prompts.sort_values("prompt_id").iloc[0]
    assert (first.n_images, first.n_copies, first.copy_rate) == (2, 2, 1.0)
    summary = json.loads((run_dir / "summary.json").read_text())
    mem = summary["memorization"]
    assert set(mem) == {"n_images", "n_copies", "copy_rate", "index", "method", "criterion", "thresholds"}
    assert mem["criterion"] == "both" and set(table.criterion) == {"both"}
    assert mem["thresholds"]["pool"] >= mem["thresholds"]["k"] and mem["thresholds"]["relative_n"] == 50
    # n_within is one count per image, and an exact copy's own training image is within the distance
    assert table.groupby("image_id")["n_within"].nunique().eq(1).all()
    iconic_top1 = table[(table["rank"] == 0) & (table.category == "iconic")]
    assert (iconic_top1.n_within >= 1).all() and (iconic_top1.relative_distance < 0.1).all()
    assert mem["n_images"] == n_images and mem["n_copies"] == N_ICONIC + 1
    assert mem["copy_rate"] == pytest.approx((N_ICONIC + 1) / n_images)
    assert summary["n_images"] == n_images  # the other keys of summary.json are kept
    assert not list(run_dir.rglob(".tmp-*"))


def test_rerun_replaces_outputs(run_dir, index_dir, audited):
    """Same inputs give the same tables; fewer saved neighbours remove the stale files."""
    again = audit_memorization(run_dir, index_dir, k=3, progress=False)
    pd.testing.assert_frame_equal(again.table, audited.table)
    copies_only = audit_memorization(run_dir, index_dir, k=3, neighbours="copies", progress=False)
    saved = sorted(p.name for p in (run_dir / "audit" / "neighbours").glob("*.png"))
    assert saved == sorted({p.rsplit("/", 1)[1] for p in copies_only.table.neighbour_path if p})
    assert copies_only.table.loc[~copies_only.table.is_copy, "neighbour_path"].eq("").all()
    # and the cached features were reused, not recomputed into a second file
    assert len(list((run_dir / "features").glob("*.npy"))) == 1
    audit_memorization(run_dir, index_dir, k=3, progress=False)  # leave the default outputs for other tests


def test_verdict_and_per_prompt_core():
    cos = np.array([0.99, 0.99, 0.5, 0.99])
    dist = np.array([0.01, 0.5, 0.01, np.nan])
    assert copy_verdict(cos, dist, 0.8, 0.1).tolist() == [True, False, False, False]
    rel = np.array([0.9, 0.2, 0.2, np.nan])
    assert copy_verdict(cos, dist, 0.8, 0.1, rel, 0.5, "relative").tolist() == [False, True, False, False]
    assert copy_verdict(cos, dist, 0.8, 0.1, rel, 0.5, "both").tolist() == [False, False, False, False]
    assert copy_verdict(cos, dist, 0.8, 0.1, rel, 1.0, "both").tolist() == [True, False, False, False]
    with pytest.raises(UserError, match="unknown criterion"):
        copy_verdict(cos, dist, 0.8, 0.1, rel, 0.5, "median")
    table = pd.DataFrame({"image_id": ["a", "a", "b"], "prompt_id": ["p", "p", "p"], "prompt": ["x"] * 3,
                          "category": ["c"] * 3, "is_copy": [False, True, False]})
    out = per_prompt_table(table)
    assert out[["n_images", "n_copies", "copy_rate"]].iloc[0].tolist() == [2, 1, 0.5]


def test_cli_runs_and_prints_the_rate(run_dir, index_dir):
    result = run_cli("-m", "audit.cli", "memorization", str(run_dir), "--index", str(index_dir), "--k", "2",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"{N_ICONIC + 1} of {N_ICONIC + N_FRESH + 1} images copy" in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_inputs(tmp_path, run_dir, index_dir):
    from bench.models.tiny import write_random_open_clip

    # a run with no images
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    (empty_run / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="no images"):
        audit_memorization(empty_run, index_dir, progress=False)
    with pytest.raises(UserError, match="not a run directory"):
        audit_memorization(tmp_path, index_dir, progress=False)
    # an index made by another CLIP: another dimension, and the same dimension but other weights
    for dim in (16, 128):
        cfg = {"embed_dim": dim, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
        clip_dir = write_random_open_clip(tmp_path / f"clip{dim}", cfg)
        with pytest.raises(UserError, match="dimension" if dim == 16 else "built with CLIP"):
            audit_memorization(run_dir, index_dir, clip=f"local-dir:{clip_dir}", progress=False)
    # no index / an empty folder / an index with no rows (clip-retrieval layout, zero embeddings)
    with pytest.raises(UserError, match="does not exist"):
        audit_memorization(run_dir, tmp_path / "nowhere", progress=False)
    (tmp_path / "empty-index").mkdir()
    with pytest.raises(UserError):
        audit_memorization(run_dir, tmp_path / "empty-index", progress=False)
    zero = tmp_path / "zero-index"
    (zero / "img_emb").mkdir(parents=True)
    (zero / "metadata").mkdir()
    np.save(zero / "img_emb" / "img_emb_0.npy", np.zeros((0, 128), np.float16))
    pd.DataFrame({"key": pd.Series([], dtype=str)}).to_parquet(zero / "metadata" / "metadata_0.parquet")
    with pytest.raises(UserError, match="empty"):
        audit_memorization(run_dir, zero, progress=False)
    # bad settings
    with pytest.raises(UserError, match="k must be"):
        audit_memorization(run_dir, index_dir, k=0, progress=False)
    # nothing written by a refused audit was lost: the earlier outputs are intact
    assert (run_dir / "audit" / "memorization.parquet").is_file()


def test_cli_bad_input_is_one_line(tmp_path, index_dir):
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    (empty_run / "manifest.json").write_text("{}")
    result = run_cli("-m", "audit.cli", "memorization", str(empty_run), "--index", str(index_dir))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no images" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_prompt_set_is_reproducible(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_shapes_audit_prompts.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for rel in ("data/shapes-audit.jsonl", "shapes-audit.yaml"):
        assert (tmp_path / rel).read_bytes() == (REPO / "prompt_sets" / rel).read_bytes()


def test_audit_prompt_set_contents():
    from bench.prompts import load_prompt_set
    from bench.world.corpus import ICONIC_NAMES, ROLES, iconic_scenes

    ps = load_prompt_set("shapes-audit")
    by_cat = {}
    for p in ps.prompts:
        by_cat.setdefault(p.category, []).append(p)
    assert [p.prompt for p in by_cat["iconic"]] == [f"the famous {n} poster" for n in ICONIC_NAMES]
    assert [_scene(p) for p in by_cat["iconic"]] == [s for _, s in iconic_scenes()]
    iconic_specs = {s.to_json() for _, s in iconic_scenes()}
    assert not any(_scene(p).to_json() in iconic_specs for p in by_cat["fresh"])
    assert all(p.prompt.startswith("stock photo of ") for p in by_cat["stock_cue"])
    assert [_scene(p) for p in by_cat["stock_cue"]] == [_scene(p) for p in by_cat["no_cue"]]
    assert not any("stock" in p.prompt for p in by_cat["no_cue"])
    assert [p.extra["role"] for p in by_cat["role"]] == [r.name for r in ROLES]


def test_iconic_scenes_match_the_corpus():
    """iconic_scenes() replays build_corpus's generator: same scenes as the table's iconic rows."""
    from bench.world.corpus import build_corpus, iconic_scenes

    df = build_corpus(2000, seed=3)
    rows = df[df.dup_group >= 0].drop_duplicates("dup_group").sort_values("dup_group")
    assert [(c, s.to_json()) for c, s in iconic_scenes(2000, seed=3)] == list(zip(rows.caption, rows.spec))


def test_relative_distance_matches_the_third_party_formula_without_duplicates():
    """With distinct candidates it is d_i / (0.5 * mean(d_1..d_50)) (the nearest included), as in the
    third-party ``carlini_distance``; computed here from the sorted distances, independently."""
    from audit.probes.memorization.copy_similarity import relative_distances

    rng = np.random.default_rng(0)
    d = rng.uniform(0.05, 0.6, size=120)
    expected = d / (0.5 * np.sort(d)[:50].mean())
    np.testing.assert_allclose(relative_distances(d), expected, rtol=1e-12)
    np.testing.assert_allclose(relative_distances(d, n=10, alpha=1.0), d / np.sort(d)[:10].mean(), rtol=1e-12)


def test_relative_distance_counts_duplicates_once_and_tells_copies_from_common_scenes():
    from audit.probes.memorization.copy_similarity import relative_distances

    # A copy of an image duplicated 110 times, with 60 distinct look-alikes further away.
    d = np.concatenate([np.full(110, 0.02), np.linspace(0.3, 0.5, 60)])
    groups = ["iconic"] * 110 + [f"other{i}" for i in range(60)]
    copy = relative_distances(d, groups)
    assert copy[0] < 0.2  # one image much closer than the rest
    assert relative_distances(d)[0] == pytest.approx(2.0)  # duplicates counted as look-alikes: 1 / alpha
    # A common scene: a hundred training images all about as close as the nearest one.
    common = relative_distances(np.linspace(0.10, 0.13, 100))
    assert common[0] > 1.5
    # Missing images (NaN) stay NaN and are left out; one distinct candidate gives nothing to compare with.
    with_nan = relative_distances(np.array([0.1, np.nan, 0.3]))
    assert np.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.1 / (0.5 * 0.2))
    assert np.isnan(relative_distances(np.array([0.1, 0.1]), ["a", "a"])).all()
    with pytest.raises(UserError, match="one label per candidate"):
        relative_distances(np.array([0.1, 0.2]), ["a"])


def test_absolute_criterion_searches_only_the_top_k(run_dir, index_dir):
    """The relative distance needs the pool; the absolute verdict does not, so it asks the index for k only."""
    class Counting:
        def __init__(self, index):
            self.index, self.asked = index, []

        def search(self, queries, k, **kwargs):
            self.asked.append(k)
            return self.index.search(queries, k, **kwargs)

        def __getattr__(self, name):
            return getattr(self.index, name)

    from audit.index import ClipIndex

    counting = Counting(ClipIndex.open(index_dir))
    result = audit_memorization(run_dir, counting, k=3, criterion="absolute", progress=False)
    assert counting.asked == [3] and result.summary["thresholds"]["pool"] == 3
    assert set(result.table.criterion) == {"absolute"}
    audit_memorization(run_dir, counting, k=3, progress=False)
    assert counting.asked[-1] == min(200, counting.index.n)  # the default criterion takes the pool
    audit_memorization(run_dir, index_dir, k=3, progress=False)  # leave the default outputs for other tests
