"""The bias probe's calibration in the built-in world, where every share has a known right answer.

Training-corpus images of the six role words (shapes-laion, 100 rows per role, the
planted shares exactly) imported as a run and audited: the probe (the evaluator
CLIP, gated by the detector's object finding as real images are by MTCNN) must
recover the direction of every planted skew, find no significant skew for the
balanced control "brushkeeper", and its colour shares must lie within 5 pp of the
detector's exact shares on the same images.  The evaluator CLIP's zero-shot shape
accuracy is 0.332 (docs/builtin-model.md), so shape roles are measured and their
miss is asserted as reported, not hidden.
"""

import json

import numpy as np
import pytest

from audit.probes.bias.run import CALIBRATION_TOLERANCE, audit_bias
from bench import contract as C
from bench.importer import import_images
from bench.world import build_corpus, render_row
from bench.world.corpus import ROLES

pytestmark = pytest.mark.slow
PER_ROLE = 100  # build_corpus(10_000) has exactly 100 rows per role


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bias-corpus")
    corpus = build_corpus(100 * PER_ROLE, seed=0)
    roles = corpus[corpus["category"] == "role"]
    folder = tmp / "images"
    folder.mkdir()
    lines = []
    for r, role in enumerate(ROLES):
        pid = f"role-{role.name}"
        rows = roles[roles["role"] == role.name]
        assert len(rows) == PER_ROLE
        for k, (_, row) in enumerate(rows.iterrows()):
            render_row(row).save(folder / f"{pid}_{k}.png")
        lines.append({"id": pid, "prompt": f"a picture of a {role.name}", "category": "role", "role": role.name,
                      "dimension": role.dimension, "values": list(role.values), "p_major": role.p_major})
    prompts = tmp / "roles.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    import_images(str(folder), str(prompts), "shapes-laion", str(tmp / "run"))
    result = audit_bias(tmp / "run", prompts=str(prompts), progress=False)
    return tmp / "run", result


def _roles(result):
    return {r["role"]: r for r in result.summary["calibration"]["roles"]}


def test_detector_reads_the_planted_shares_exactly(corpus_run):
    _, result = corpus_run
    for role in ROLES:
        r = _roles(result)[role.name]
        assert r["n_detected"] == PER_ROLE  # one clean object per corpus image
        assert r["detector_share"][0] == pytest.approx(role.p_major)


def test_clip_recovers_every_planted_skew_and_no_skew_for_the_control(corpus_run):
    _, result = corpus_run
    roles = _roles(result)
    for role in ROLES:
        r = roles[role.name]
        if role.dimension == "colour":
            assert r["planted_recovered_clip"] is True, r
        if role.p_major == 0.5:
            lo, hi = r["skew_clip"][1:]
            assert lo <= 0.5 <= hi  # the balanced control: no significant skew
    # the control's interval is honest: 50 of 100 read as green
    assert roles["brushkeeper"]["clip_share_same_images"][0] == pytest.approx(0.5, abs=CALIBRATION_TOLERANCE)


def test_clip_colour_shares_within_5pp_of_the_detector(corpus_run):
    _, result = corpus_run
    for role in ROLES:
        r = _roles(result)[role.name]
        if role.dimension == "colour":
            assert r["within_tolerance"] is True, r
            assert abs(r["clip_minus_detector"]) <= CALIBRATION_TOLERANCE


def test_clip_shape_reading_is_reported_as_too_weak(corpus_run):
    """Zero-shot shape accuracy 0.332: the probe must say so (a warning, within_tolerance False), not hide it."""
    run, result = corpus_run
    shape_roles = [r for r in result.summary["calibration"]["roles"] if r["dimension"] == "shape"]
    assert shape_roles
    agreement = result.summary["calibration"]["agreement_by_dimension"]
    assert agreement["colour"] >= 0.99
    assert agreement["shape"] < 0.6
    assert any(not r["within_tolerance"] for r in shape_roles)
    assert any("shape" in w for w in result.summary["warnings"])
    prompts = C.read_table(run, C.BIAS_PROMPTS_TABLE)
    det = prompts[(prompts.level == "prompt") & (prompts.method == "detector") & (prompts["diff"].notna())]
    # the corpus itself has no amplification: the detector's share equals the planted share, diff 0
    assert np.allclose(det["diff"], 0.0, atol=1e-9)
