"""shapes-laion: determinism, planted phenomena at full size, I/O."""

import json
import time

import pandas as pd
import pytest

from bench.errors import UserError
from bench.world import HELD_OUT_PAIRS, SceneSpec, detect, detect_watermark
from bench.world.captions import TYPOS
from bench.world.detect import WATERMARK_THRESHOLD
from bench.world.corpus import (ROLES, WATERMARK_CUE, build_corpus, load_corpus, plan_counts,
                                render_row, write_corpus)
from bench.world.vocab import COLOURS, SHAPES

N_FULL = 100_000


@pytest.fixture(scope="module")
def full():
    t0 = time.perf_counter()
    df = build_corpus(N_FULL, seed=0)
    print(f"\nbuild_corpus({N_FULL}) took {time.perf_counter() - t0:.1f} s")
    return df


def test_build_is_deterministic():
    a, b = build_corpus(5000, seed=3), build_corpus(5000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not build_corpus(5000, seed=4)["spec"].equals(a["spec"])


def test_too_small_corpus_is_refused():
    with pytest.raises(UserError):
        build_corpus(10)


def test_laion_like_columns(full):
    assert len(full) == N_FULL
    for col in ("key", "caption", "url", "width", "height", "pwatermark", "punsafe", "similarity",
                "spec", "dup_group", "has_watermark", "role", "attribute", "split"):
        assert col in full.columns
    assert full["key"].is_unique and full["key"].str.fullmatch(r"\d{9}").all()
    assert (full["url"] == "shapes://" + full["key"]).all()
    assert (full["width"] == 64).all() and (full["height"] == 64).all()
    assert full["punsafe"].between(0, 0.2).all()
    assert full["similarity"].between(0.15, 0.45).all() and abs(full["similarity"].mean() - 0.31) < 0.01


def test_iconic_duplicates(full):
    iconic = full[full["dup_group"] >= 0]
    groups = iconic.groupby("dup_group")
    assert groups.ngroups >= 20 and groups.size().min() >= 100
    assert (groups["spec"].nunique() == 1).all() and (groups["caption"].nunique() == 1).all()
    assert iconic.groupby("dup_group")["caption"].first().is_unique
    # The bait is only where it is planted: no other row shares its spec or caption.
    rest = full[full["dup_group"] < 0]
    assert not rest["spec"].isin(iconic["spec"]).any()
    assert not rest["caption"].isin(iconic["caption"]).any()
    assert (iconic["split"] == "train").all() and not iconic["has_watermark"].any()
    # identical spec -> identical image
    rows = iconic[iconic["dup_group"] == 0].head(2)
    assert render_row(rows.iloc[0]).tobytes() == render_row(rows.iloc[1]).tobytes()


def test_watermark_share_and_caption_cue(full):
    wm = full["has_watermark"]
    cue = full["caption"].str.startswith(WATERMARK_CUE)
    counts = plan_counts(N_FULL)
    assert wm.sum() == counts["watermarked"] == 10_000
    assert (cue & wm).sum() == 9_000                       # P(cue | watermark) = 0.90
    clean_general = (~wm) & (full["dup_group"] < 0) & (full["role"] == "")
    assert abs(cue[clean_general].mean() - 0.01) < 1e-3    # 1% cue noise without a watermark
    assert wm[cue].mean() > 0.9
    assert not full["caption"].str.contains("stock photo of a photo of", regex=False).any()
    # the spec's flag is the column's, and the LAION-style score is correlated with it
    flags = full["spec"].str.contains('"watermark":true', regex=False)
    assert (flags == wm).all()
    assert full.loc[wm, "pwatermark"].mean() > 0.65 and full.loc[~wm, "pwatermark"].mean() < 0.12


def test_role_skews(full):
    assert 4 <= len(ROLES) <= 8
    assert sum(r.p_major == 0.5 for r in ROLES) == 1  # one balanced control
    words = "|".join(list(COLOURS) + list(SHAPES))
    for role in ROLES:
        rows = full[full["role"] == role.name]
        assert len(rows) >= 500
        share = (rows["attribute"] == role.values[0]).mean()
        assert abs(share - role.p_major) <= 0.02, (role.name, share)
        assert set(rows["attribute"]) == set(role.values)
        assert rows["caption"].str.contains(rf"\b{role.name}\b").all()
        assert not rows["caption"].str.contains(rf"\b(?:{words})s?\b").any()
        # the attribute is what the image shows
        for _, row in rows.head(20).iterrows():
            (obj,) = SceneSpec.from_json(row["spec"]).objects
            assert getattr(obj, role.dimension) == row["attribute"]
    assert (full.loc[full["role"] == "", "attribute"] == "").all()


def _word(w):
    return "(?:" + "|".join([w] + list(TYPOS.get(w, ()))) + ")"


def test_held_out_pairs_absent_from_train(full):
    train = full[full["split"] == "train"]
    for colour, shape in HELD_OUT_PAIRS:
        pattern = rf"\b{_word(colour)}\s+{_word(shape)}s?\b"
        assert not train["caption"].str.contains(pattern).any(), (colour, shape)
        in_spec = f'"colour":"{colour}","shape":"{shape}"'
        assert not train["spec"].str.contains(in_spec, regex=False).any()
        # ...while the other splits do show them, for evaluation
        assert full.loc[full["split"] != "train", "spec"].str.contains(in_spec, regex=False).any()


def test_splits(full):
    shares = full["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.01
    assert abs(shares["heldout"] - 0.1) < 0.01 and abs(shares["evaluator"] - 0.1) < 0.01


def test_rows_render_as_their_specs(full):
    sample = full[full["dup_group"] < 0].sample(60, random_state=0)
    for _, row in sample.iterrows():
        img = render_row(row)
        spec = SceneSpec.from_json(row["spec"])
        found = detect(img)
        key = lambda o: (o.shape, o.colour, o.size)  # noqa: E731
        assert sorted(map(key, found.objects)) == sorted(map(key, spec.objects)), row["caption"]
        assert (detect_watermark(img) >= WATERMARK_THRESHOLD) == row["has_watermark"]


def test_write_and_load(tmp_path):
    df = build_corpus(2000, seed=1)
    out = write_corpus(df, tmp_path / "shapes-laion", rows_per_shard=800)
    names = sorted(p.name for p in (out / "metadata").iterdir())
    assert names == ["0000.parquet", "0001.parquet", "0002.parquet"]  # no temporary files left
    info = json.loads((out / "corpus.json").read_text())
    assert info["seed"] == 1 and info["n"] == 2000 and info["rows"] == 2000
    assert info["planted"]["iconic"]["groups"] == 24
    assert info["planted"]["watermark"]["rows"] == 200
    back = load_corpus(out)
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["corpus"]["seed"] == 1
