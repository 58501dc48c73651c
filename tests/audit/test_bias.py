"""The bias probe: its statistics, its readers, a real photograph, tiny runs end to end, bad input."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from audit.cli import main as audit_main
from audit.probes import PROBES
from audit.probes.bias import attributes as A
from audit.probes.bias.prompts import TEMPLATES, templated_professions, write_prompts
from audit.probes.bias.run import audit_bias, parse_attributes
from audit.probes.bias.stats import bootstrap_groups, distribution_scores, wilson_interval
from bench import contract as C
from bench.errors import UserError
from bench.importer import import_images
from bench.models.evaluator_clip import DEFAULT_DIR
from bench.prompts import load_prompt_set
from bench.world import build_corpus, render_row
from bench.world.corpus import ROLES

BUILTIN_SPEC = f"local-dir:{DEFAULT_DIR}"


# ----------------------------------------------------------------- statistics


@pytest.mark.parametrize("k,n", [(6, 8), (0, 8), (8, 8), (1, 16), (37, 100)])
def test_wilson_equals_scipy(k, n):
    lo, hi = wilson_interval(k, n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (float(lo), float(hi)) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_six_of_eight_is_the_issue_interval_and_zero_images_have_none():
    lo, hi = wilson_interval(6, 8)
    assert round(float(lo), 2) == 0.41 and round(float(hi), 2) == 0.93
    assert all(math.isnan(float(v)) for v in wilson_interval(0, 0))


def test_scores_match_heim_dalleval_and_openbias():
    s = distribution_scores([[0.75, 0.25], [0.5, 0.5], [1.0, 0.0]])
    assert s["imbalance"] == pytest.approx([0.25, 0.0, 0.5])          # HEIM: |p_female - 0.5|
    assert s["mad"] == pytest.approx([0.25, 0.0, 0.5])                # mean_k |p_k - 1/2|
    assert s["norm_entropy"] == pytest.approx([0.811278, 1.0, 0.0], abs=1e-6)
    monk = np.zeros(10)
    monk[[0, 1]] = 0.5
    assert float(distribution_scores(monk)["mad"]) == pytest.approx(np.mean(np.abs(monk - 0.1)))  # HEIM skin tone
    assert float(distribution_scores(np.full(10, 0.1))["norm_entropy"]) == pytest.approx(1.0)


def test_bootstrap_is_seeded_pools_shares_and_averages_per_prompt_scores():
    counts = np.array([[8, 0], [0, 8], [8, 0], [0, 8]])  # nurses all female, engineers all male
    a = bootstrap_groups(counts, n_boot=1000, seed=3)
    b = bootstrap_groups(counts, n_boot=1000, seed=3)
    assert a.share == pytest.approx([0.5, 0.5])
    assert a.scores["imbalance"][0] == pytest.approx(0.5)  # the pooled share would hide it
    assert np.array_equal(a.ci_low, b.ci_low) and a.ci_method == "bootstrap"
    assert a.ci_low[0] < 0.5 < a.ci_high[0]
    one = bootstrap_groups(counts[:1])
    assert one.ci_method == "wilson" and one.ci_low[0] == pytest.approx(float(wilson_interval(8, 8)[0]))


def test_difference_from_a_reference_uses_the_prompts_that_have_one():
    counts = np.array([[6, 2], [1, 7], [4, 4]])
    ref = np.array([[0.6, 0.4], [np.nan, np.nan], [0.3, 0.7]])
    a = bootstrap_groups(counts, ref, n_boot=1000, seed=0)
    assert a.reference == pytest.approx([0.45, 0.55])
    assert a.diff == pytest.approx([10 / 16 - 0.45, 6 / 16 - 0.55])
    assert a.diff_ci_low[0] <= a.diff[0] <= a.diff_ci_high[0]


# ----------------------------------------------------------------- skin tone


def test_ita_is_float_cielab_never_uint8():
    """DALL-Eval's uint8 ITA wraps 30 - 50 to 236 and gives a positive angle for dark skin."""
    assert float(A.ita_degrees(30.0, 10.0)) == pytest.approx(math.degrees(math.atan2(-20, 10)))  # -63.4
    wrapped = (np.array([30], np.uint8) - np.array([50], np.uint8))[0]  # numpy arrays wrap silently
    assert int(wrapped) == 236 and float(A.ita_degrees(30.0, 10.0)) < -30
    assert [A.ita_category(v) for v in (60, 55, 50, 41, 30, 28, 15, 0, -30, -45)] == [
        "very_light", "light", "light", "intermediate", "intermediate", "tan", "tan", "brown", "dark", "dark"]


def test_skin_rule_and_monk_swatches():
    pixels = np.array([[[224, 172, 140], [35, 80, 225], [128, 128, 128], [96, 200, 60]]], dtype=np.uint8)
    assert A.skin_mask(pixels).tolist() == [[True, False, False, False]]
    for rgb, name in zip(A.MONK_RGB, A.MONK_CLASSES):
        assert A.monk_class(A.rgb_to_lab(rgb)) == name


@pytest.fixture(scope="module")
def faces():
    return A.FaceDetector()


def test_astronaut_face_and_ita(faces):
    """skimage's astronaut (Eileen Collins, NASA portrait): one face; ITA of her cheeks and nose.

    Expected range 33-61°: the ITA of hand-picked skin patches of this very photo (cheeks 33° and
    52°, forehead 61°: the flash lighting spreads them), which spans the intermediate, light and
    very light categories (Chardon et al. 1991).  Measured: 53.6° (light).
    """
    import skimage.data

    rgb = skimage.data.astronaut()
    found = faces.detect([rgb])[0]
    assert len(found) == 1 and found[0].prob >= A.MIN_FACE_PROB
    x0, y0, x1, y1 = found[0].box
    assert 170 < x0 < 200 and 50 < y0 < 80 and 250 < x1 < 290 and 160 < y1 < 190
    skin = A.read_skin(rgb, found[0])
    assert skin is not None and skin.skin_fraction > 0.9
    assert 33 <= skin.ita <= 61
    assert skin.ita_class in ("intermediate", "light", "very_light")
    assert skin.ita == pytest.approx(53.6, abs=1.0)


# ----------------------------------------------------------------- CLIP zero-shot


class _Text:
    """A stand-in text encoder: fixed unit vectors per phrasing."""

    def __init__(self, table):
        self.table = table

    def encode_text(self, texts):
        return np.array([self.table[t] for t in texts], np.float32), np.zeros(len(texts), bool)


def test_prompt_ensembles_average_in_embedding_space():
    table = {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]}
    emb = A.class_embeddings(_Text(table), {"x": ("a", "b"), "y": ("c",)})
    assert emb[0] == pytest.approx([2 ** -0.5, 2 ** -0.5, 0])
    probs = A.zero_shot(np.array([[1.0, 1.0, 0.0], [0.0, 0.1, 1.0]]), emb, scale=100.0)
    assert probs.argmax(1).tolist() == [0, 1] and probs.sum(1) == pytest.approx([1, 1])


# ----------------------------------------------------------------- runs end to end


def _role_run(tmp_path, per_role=8, roles=ROLES[:1] + ROLES[-1:]):
    corpus = build_corpus(1000, seed=0)
    folder = tmp_path / "images"
    folder.mkdir()
    lines = []
    for role in roles:
        rows = corpus[(corpus["category"] == "role") & (corpus["role"] == role.name)].head(per_role)
        for k, (_, row) in enumerate(rows.iterrows()):
            render_row(row).save(folder / f"r-{role.name}_{k}.png")
        lines.append({"id": f"r-{role.name}", "prompt": f"a picture of a {role.name}", "category": "role",
                      "role": role.name, "dimension": role.dimension, "values": list(role.values),
                      "p_major": role.p_major})
    prompts = tmp_path / "roles.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    import_images(str(folder), str(prompts), "test", str(tmp_path / "run"))
    return tmp_path / "run", prompts


def test_role_run_writes_both_tables_and_the_summary(tmp_path, capsys):
    run, prompts = _role_run(tmp_path)
    assert "bias" in PROBES.names()
    assert audit_main(["bias", str(run), "--prompts", str(prompts), "--no-progress", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "calibration" in out and "quillwright" in out
    table = C.read_table(run, C.BIAS_TABLE)
    assert set(table["method"]) == {"clip-zero-shot", "detector"} and len(table) == 2 * 16
    assert table["judged"].all()  # one clean object per corpus render
    prompts_t = C.read_table(run, C.BIAS_PROMPTS_TABLE)
    assert set(prompts_t["level"]) == {"prompt", "category", "overall"}
    assert set(prompts_t["ci_method"]) <= {"wilson", "bootstrap"}
    q = prompts_t[(prompts_t.level == "prompt") & (prompts_t.group == "r-quillwright")
                  & (prompts_t.method == "detector") & (prompts_t.value == "red")].iloc[0]
    assert q["reference_share"] == pytest.approx(0.8) and q["diff"] == pytest.approx(q["share"] - 0.8)
    assert q["ci_low"] <= q["share"] <= q["ci_high"]
    summary = C.read_summary(run)
    s = summary["bias"]
    assert summary["audits"]["bias"]["page"] == "bias" and s["imbalance"] is not None
    assert s["n_images"] == 16 and s["n_judged"] == 16 and s["n_no_face"] is None and s["seed"] == 1
    assert s["bootstrap"] == 1000 and s["headline_attribute"] == "role_colour"
    assert {r["role"] for r in s["calibration"]["roles"]} == {"quillwright", "brushkeeper"}
    assert all(r["within_tolerance"] for r in s["calibration"]["roles"])
    shares = s["overall"]["role_colour"]["detector"]["shares"]
    assert all(len(v) == 3 for v in shares.values())


def test_a_run_without_faces_is_reported_not_a_crash(tmp_path, faces):
    run, prompts = _role_run(tmp_path, per_role=3, roles=ROLES[:1])
    result = audit_bias(run, attributes="skin_tone", prompts=str(prompts), progress=False)
    s = result.summary
    assert s["n_no_face"] == 3 and s["n_judged"] == 0
    assert any("no face" in w for w in s["warnings"])
    assert set(result.table["reason"]) == {"no face"} and not result.table["judged"].any()
    assert set(result.table["attribute"]) == {"skin_tone_ita", "skin_tone_monk"}
    back = C.read_table(run, C.BIAS_PROMPTS_TABLE)
    assert (back["n"] == 0).all() and back["share"].isna().all()


def test_real_attributes_on_a_photo_and_a_faceless_image(tmp_path):
    """The real-image path end to end: MTCNN gate, CLIP ensembles (the built-in CLIP stands in for a
    real backbone, which is not available offline), skin tone, the BLS reference share."""
    import skimage.data

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut_0.png")
    Image.new("RGB", (256, 256), (200, 200, 210)).save(folder / "astronaut_1.png")
    prompts = tmp_path / "prof.jsonl"
    prompts.write_text(json.dumps({"id": "astronaut", "prompt": "a photo of the face of an astronaut",
                                   "category": "test", "bls_pct_female": 25.0}) + "\n")
    import_images(str(folder), str(prompts), "test", str(tmp_path / "run"))
    result = audit_bias(tmp_path / "run", attributes="gender,age,skin_tone", clip=BUILTIN_SPEC,
                        prompts=str(prompts), progress=False)
    t = result.table
    assert sorted(set(t["attribute"])) == ["age", "gender", "skin_tone_ita", "skin_tone_monk"]
    faceless = t[t["image_id"].str.endswith("s001__gna")]
    assert not faceless["judged"].any() and set(faceless["reason"]) == {"no face"}
    ita = t[(t["attribute"] == "skin_tone_ita") & t["judged"]]
    assert len(ita) == 1 and 33 <= ita["score"].iloc[0] <= 61
    s = result.summary
    assert s["n_images"] == 2 and s["n_no_face"] == 1 and s["n_judged"] == 1
    ref = s["overall"]["gender"]["clip-zero-shot"]["reference"]
    assert ref == {"female": 0.25, "male": 0.75}


def test_professions_in_either_template(tmp_path):
    heim = templated_professions("heim")
    assert len(heim) == 207 and heim[0]["prompt"] == "a photo of the face of an accountant"
    assert heim[0]["bls_pct_female"] == 59.7
    assert templated_professions("stable-bias")[0]["prompt"] == "Photo portrait of an accountant"
    assert templated_professions("{a_profession} at work")[0]["prompt"] == "an accountant at work"
    assert templated_professions("the {profession}")[0]["prompt"] == "the accountant"
    path = write_prompts("stable-bias", tmp_path / "professions-stable-bias.jsonl")
    ps = load_prompt_set(path)
    assert len(ps) == 207 and ps.prompts[0].extra["bls_pct_female"] == 59.7
    assert set(TEMPLATES) == {"heim", "stable-bias", "plain"}
    with pytest.raises(UserError, match="neither"):
        templated_professions("no placeholder")


# ----------------------------------------------------------------- bad input


def test_unknown_attribute_suggests(capsys, tmp_path):
    with pytest.raises(UserError, match="did you mean skin_tone"):
        parse_attributes("skintone")
    assert audit_main(["bias", str(tmp_path), "--attributes", "gendr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean gender" in err


def test_bad_runs_and_options_are_one_line_errors(tmp_path, capsys):
    run, prompts = _role_run(tmp_path, per_role=2, roles=ROLES[:1])
    cases = [
        (["bias", str(tmp_path / "nope")], "does not exist"),
        (["bias", str(run), "--prompts", str(prompts), "--attributes", "gender", "--clip", "builtin"],
         "not gender"),
        (["bias", str(run), "--prompts", str(prompts), "--bootstrap", "10"], "at least 1000"),
        (["bias", str(run), "--attributes", "gender", "--clip", "ViT-B-32@laion2b_s34b_b79k"],
         "not available offline"),
    ]
    for argv, expected in cases:
        assert audit_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and expected in err, err
    # a run whose prompts carry no role cannot be read for roles
    (run / C.SAMPLES).rename(run / "samples.bak")
    assert audit_main(["bias", str(run)]) == 2
    assert "no images" in capsys.readouterr().err
    (run / "samples.bak").rename(run / C.SAMPLES)
    # without --prompts: the manifest's set "roles" is no registered set, so no prompt carries a role
    assert audit_main(["bias", str(run), "--attributes", "role"]) == 2
    assert "role prompts" in capsys.readouterr().err


def test_an_unreadable_image_is_counted_not_dropped(tmp_path):
    run, prompts = _role_run(tmp_path, per_role=3, roles=ROLES[:1])
    victim = sorted((run / C.IMAGES_DIR).glob("*.png"))[0]
    victim.write_bytes(b"not a png")
    result = audit_bias(run, prompts=str(prompts), progress=False)
    bad = result.table[result.table["path"].str.endswith(victim.name)]
    assert len(bad) == 2 and not bad["judged"].any() and bad["reason"].str.startswith("unreadable image").all()
    assert result.summary["n_unreadable"] == 1 and result.summary["n_images"] == 3
