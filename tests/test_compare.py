"""`t2i-bench compare`: paired bootstrap differences, refusals, outputs; checked against naive references."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import contract as C
from bench.cli import main
from bench.compare import (PromptSums, Side, compare_runs, delta_interval, paired_delta_resamples, parse_side,
                           significant)
from bench.errors import UserError
from bench.metrics.bootstrap import resample_indices


# ----------------------------------------------------------------------------- the numeric core


def _naive_paired(a_rows, b_rows, shared, rng, resamples):
    """Reference: draw the prompts explicitly, pool each side's images of the drawn prompts, difference of means."""
    out = []
    idx = resample_indices(rng, len(shared), resamples)
    for draw in idx:
        va = np.concatenate([a_rows[shared[i]] for i in draw])
        vb = np.concatenate([b_rows[shared[i]] for i in draw])
        out.append(vb.mean() - va.mean())
    return np.array(out)


def test_paired_resamples_match_a_naive_implementation():
    rng = np.random.default_rng(1)
    prompts = [f"p{i}" for i in range(12)]
    a_rows = {p: rng.normal(size=rng.integers(1, 4)) for p in prompts}
    b_rows = {p: rng.normal(size=rng.integers(1, 4)) + 0.3 for p in prompts}
    flat = lambda rows: (np.concatenate(list(rows.values())), [p for p, v in rows.items() for _ in v])  # noqa: E731
    a, b = PromptSums.of(*flat(a_rows)), PromptSums.of(*flat(b_rows))
    fast = paired_delta_resamples(a, b, np.random.default_rng(5), 300)
    naive = _naive_paired(a_rows, b_rows, list(a.prompts), np.random.default_rng(5), 300)
    np.testing.assert_allclose(fast, naive, rtol=1e-12)


def test_pairing_finds_a_shift_that_prompt_variance_hides_unpaired():
    rng = np.random.default_rng(0)
    prompt_effect = rng.normal(scale=5.0, size=40)  # prompts differ a lot; B is A + 0.5 on every prompt
    noise = rng.normal(scale=0.2, size=(2, 40))
    prompts = [f"p{i}" for i in range(40)]
    a = PromptSums.of(prompt_effect + noise[0], prompts)
    b = PromptSums.of(prompt_effect + 0.5 + noise[1], prompts)
    paired = delta_interval(a, b, np.random.default_rng(1), 1000)
    assert paired["paired"] and significant(paired["ci_low"], paired["ci_high"])
    assert paired["delta"] == pytest.approx(0.5, abs=0.1)
    b_other = PromptSums.of(prompt_effect + 0.5 + noise[1], [f"q{i}" for i in range(40)])  # no shared prompt
    unpaired = delta_interval(a, b_other, np.random.default_rng(1), 1000)
    assert not unpaired["paired"] and not significant(unpaired["ci_low"], unpaired["ci_high"])
    assert unpaired["ci_high"] - unpaired["ci_low"] > 10 * (paired["ci_high"] - paired["ci_low"])


def test_same_seed_same_interval_and_resampling_is_batch_free():
    prompts = [f"p{i % 7}" for i in range(30)]
    values = np.linspace(0, 1, 30)
    a, b = PromptSums.of(values, prompts), PromptSums.of(values[::-1], prompts)
    first = delta_interval(a, b, np.random.default_rng(3), 500)
    again = delta_interval(a, b, np.random.default_rng(3), 500)
    assert first == again


def test_set_metric_resamples_accept_totals_other_than_n():
    """A resample of whole prompts gives row counts whose total is not N: the set metrics use the total."""
    from bench.metrics.cmmd import cmmd_resamples, mmd_rbf
    from bench.metrics.kid import kid_resamples
    from bench.metrics.precision_recall import pr_resamples, precision_recall

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.normal(size=(25, 4)) + 0.2
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    ones, twos = np.ones((1, 20)), 2 * np.ones((1, 20))
    assert cmmd_resamples(x, y, twos)[0] == pytest.approx(cmmd_resamples(x, y, ones)[0])
    assert cmmd_resamples(x, y, ones)[0] == pytest.approx(mmd_rbf(x, y), rel=1e-9)
    assert pr_resamples(x, y, twos)[0][0] == pytest.approx(precision_recall(x, y)[0].value)
    # KID with every row drawn twice: pairs of copies are left out, so it is the MMD² of the doubled set
    # without self-pairs of copies — between the plain value and the biased one; check against the formula.
    doubled = np.repeat(x, 2, axis=0)
    from bench.metrics.kid import polynomial_kernel

    k = polynomial_kernel(doubled, doubled)
    same = np.kron(np.eye(20), np.ones((2, 2))).astype(bool)
    xx = k[~same].mean()
    k_yy = polynomial_kernel(y, y)
    expected = xx + (k_yy.sum() - np.trace(k_yy)) / (25 * 24) - 2 * polynomial_kernel(doubled, y).mean()
    assert kid_resamples(x, y, twos)[0] == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- runs written through the contract


def _fake_run(path, values_by_guidance, extractor="clip:builtin", formulation="cfg", prompts=None):
    """A scored run: samples + image_scores (CLIPScore and compositional_accuracy) + metrics, via the contract."""
    path.mkdir(parents=True)
    (path / C.MANIFEST).write_text(json.dumps({"guidance_formulation": formulation, "complete": True}))
    samples, scores = [], []
    rng = np.random.default_rng(len(str(path)))
    for g, shift in values_by_guidance.items():
        for i in range(30):
            pid = prompts[i] if prompts else f"p{i}"
            for k in range(2):
                image_id = f"{pid}_{k}_g{g:g}"
                samples.append({"image_id": image_id, "prompt_id": pid, "prompt": f"prompt {pid}",
                                "category": "colors" if i % 2 else "counting", "sample_index": k, "seed": k,
                                "guidance": g, "cfg_scale": g + (1 if formulation == "ho-salimans" else 0),
                                "path": f"images/{image_id}.png"})
                scores.append({"image_id": image_id, "prompt_id": pid, "category": samples[-1]["category"],
                               "guidance": g, "metric": "CLIPScore", "value": 20 + i + shift + rng.normal(),
                               "extractor": extractor})
                scores.append({"image_id": image_id, "prompt_id": pid, "category": samples[-1]["category"],
                               "guidance": g, "metric": "compositional_accuracy",
                               "value": float(rng.random() < 0.3 + shift / 10), "extractor": "shapes-world-detector"})
    C.write_table(path, C.SAMPLES_TABLE, C.coerce(pd.DataFrame(samples), C.SAMPLES_TABLE))
    C.write_table(path, C.IMAGE_SCORES_TABLE, C.coerce(pd.DataFrame(scores), C.IMAGE_SCORES_TABLE))
    return path


def test_compare_two_guidance_scales_of_one_run(tmp_path):
    run = _fake_run(tmp_path / "run", {1.0: 0.0, 7.5: 3.0})
    result = compare_runs([Side(run, 1.0), Side(run, 7.5)], resamples=400, set_metrics=False)
    t = result.table
    overall = t[t.subset == "all"].set_index("metric")
    scores = C.read_table(run, C.IMAGE_SCORES_TABLE)
    clip = scores[scores.metric == "CLIPScore"]
    assert overall.loc["CLIPScore", "value_a"] == pytest.approx(clip[clip.guidance == 1.0].value.mean())
    assert overall.loc["CLIPScore", "delta"] == pytest.approx(
        clip[clip.guidance == 7.5].value.mean() - clip[clip.guidance == 1.0].value.mean())
    assert overall.loc["CLIPScore", "significant"] and overall.loc["CLIPScore", "paired"]
    assert overall.loc["CLIPScore", "n_shared_prompts"] == 30
    assert "paired percentile bootstrap over 30 shared prompts" in overall.loc["CLIPScore", "test"]
    cats = t[(t.metric == "CLIPScore") & (t.subset != "all")]
    assert set(cats.subset) == {"category=colors", "category=counting"}
    assert list(cats.delta.abs()) == sorted(cats.delta.abs(), reverse=True)
    assert result.labels == ["run@1", "run@7.5"]


def test_compare_runs_without_shared_prompts_falls_back_to_unpaired(tmp_path):
    a = _fake_run(tmp_path / "a", {7.5: 0.0})
    b = _fake_run(tmp_path / "b", {7.5: 0.0}, prompts=[f"q{i}" for i in range(30)])
    result = compare_runs([Side(a), Side(b)], resamples=300, set_metrics=False)
    assert not result.table.paired.any()
    assert any("share no prompt" in n for n in result.notes)
    assert result.table.test.str.startswith("unpaired").all()


def test_mixed_guidance_formulations_are_noted(tmp_path):
    a = _fake_run(tmp_path / "a", {7.5: 0.0})
    b = _fake_run(tmp_path / "b", {6.5: 0.0}, formulation="ho-salimans")
    result = compare_runs([Side(a), Side(b)], resamples=200, set_metrics=False)
    assert any("different guidance formulations" in n and "cfg_scale" in n for n in result.notes)


@pytest.mark.parametrize("make, args, message", [
    (lambda t: [_fake_run(t / "a", {7.5: 0}), _fake_run(t / "b", {7.5: 0}, extractor="clip:other")],
     lambda r: [str(r[0]), str(r[1])], "scored with clip:builtin"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [f"{r[0]}@7.5", f"{r[0]}@3"], "no images at guidance 3"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [f"{r[0]}@7.5", f"{r[0]}@x"], "must be a number"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [str(r[0])], "at least two runs"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [str(r[0]), str(r[0])], "must differ"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [str(r[0]), str(r[0].parent / "nope")], "does not exist"),
    (lambda t: [_fake_run(t / "a", {7.5: 0}), t / "plain"], lambda r: [str(r[0]), str(r[1])],
     "not a run directory"),
    (lambda t: [_fake_run(t / "a", {7.5: 0})], lambda r: [str(r[0]), f"{r[0]}@7.5", "--resamples", "5"],
     "at least 100"),
])
def test_compare_refuses_in_one_line(tmp_path, capsys, make, args, message):
    (tmp_path / "plain").mkdir()
    runs = make(tmp_path)
    code = main(["compare", *args(runs), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_unscored_run_is_refused(tmp_path):
    run = _fake_run(tmp_path / "a", {7.5: 0})
    C.IMAGE_SCORES_TABLE.path(run).unlink()
    with pytest.raises(UserError, match="has not been scored"):
        compare_runs([Side(run), Side(_fake_run(tmp_path / "b", {7.5: 0}))], set_metrics=False)


def test_parse_side_keeps_paths_with_at_signs(tmp_path):
    odd = tmp_path / "run@home"
    odd.mkdir()
    assert parse_side(str(odd)) == Side(odd)
    assert parse_side("runs/demo@7.5") == Side(Path("runs/demo"), 7.5)
    assert parse_side("runs/demo") == Side(Path("runs/demo"))


# ----------------------------------------------------------------------------- real runs, real writers


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    from bench.generate import generate
    from bench.runspec import RunSpec
    from bench.score import ScoreSpec, score_run

    root = tmp_path_factory.mktemp("compare")
    run = generate(RunSpec(out=str(root / "run"), model="builtin:tiny-random", prompts="shapes", per_category=1,
                           steps=2, images_per_prompt=2, batch_size=16, guidance=(1.0, 3.0)), progress=False).run_dir
    score_run(ScoreSpec(run=str(run), reference=str(run), features=("efficientnet-lite0",), bootstrap=200),
              progress=False)
    return run


def test_compare_cli_on_real_runs_writes_table_and_plot(scored_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", f"{scored_run}@1", f"{scored_run}@3", "--out", str(out), "--resamples", "200"])
    printed = capsys.readouterr().out
    assert code == 0
    table = C.read_table(out, C.COMPARE_TABLE)
    assert {"compositional_accuracy", "FD_efficientnet-lite0", "KID_efficientnet-lite0"} <= set(table.metric)
    assert (out / C.COMPARE_PLOT).stat().st_size > 10_000
    # the per-image values are score's: the compared value is metrics.parquet's row at that scale
    metrics = C.read_table(scored_run, C.METRICS_TABLE)
    comp = metrics[(metrics.metric == "compositional_accuracy") & (metrics.subset == "all") & (metrics.guidance == 3.0)]
    row = table[(table.metric == "compositional_accuracy") & (table.subset == "all")].iloc[0]
    assert row.value_b == pytest.approx(comp.value.item())
    # FD of the side from the cached features equals score's FD at that scale (no re-embedding, same numbers)
    fd = metrics[(metrics.metric == "FD_efficientnet-lite0") & (metrics.subset == "all") & (metrics.guidance == 1.0)]
    fd_row = table[table.metric == "FD_efficientnet-lite0"].iloc[0]
    # (score's FD takes Tr sqrt(S_g S_r) by an eigendecomposition of the d x d product, the resampler by the
    # N x N Gram matrix when N <= d: the same number to ~1e-5 relative)
    assert fd_row.value_a == pytest.approx(fd.value.item(), rel=1e-4)
    assert fd_row.paired and fd_row.n_shared_prompts == 9
    assert "run@3 vs run@1" in printed and "test: paired percentile bootstrap" in printed


def test_image_scores_are_the_per_image_values_of_the_metrics(scored_run):
    scores = C.read_table(scored_run, C.IMAGE_SCORES_TABLE)
    metrics = C.read_table(scored_run, C.METRICS_TABLE)
    comp = scores[scores.metric == "compositional_accuracy"]
    overall = metrics[(metrics.metric == "compositional_accuracy") & (metrics.subset == "all") & metrics.guidance.isna()]
    assert len(comp) == 2 * 9 * 2 and set(comp.value) <= {0.0, 1.0}
    assert comp.value.mean() == pytest.approx(overall.value.item())
    assert set(comp.category) == set(C.read_table(scored_run, C.SAMPLES_TABLE).category)


def test_validation_counts_disjoint_seed_pairs_and_detects_a_planted_gap():
    from bench.compare_validation import guidance_pairs, seed_pairs, summarise

    rng = np.random.default_rng(0)
    rows = []
    for g, shift in ((1.0, 0.0), (7.5, 2.0)):
        for p in range(25):
            for k in range(6):
                rows.append({"image_id": f"{p}_{k}_{g}", "prompt_id": f"p{p}", "category": "c", "guidance": g,
                             "metric": "CLIPScore", "value": p + shift + rng.normal(scale=0.5), "sample_index": k})
    scores = pd.DataFrame(rows)
    same = summarise(seed_pairs(scores, 300, 0), "same")
    assert [(c.metric, c.n_tests) for c in same] == [("CLIPScore", 2 * 3)]  # 3 disjoint pairs at each of 2 scales
    gap = summarise(guidance_pairs(scores, 1.0, 7.5, 300, 0), "gap")
    assert gap[0].n_tests == 6 and gap[0].n_significant == 6


def test_set_metrics_against_different_references_are_refused(tmp_path):
    def scored(run, reference):
        rows = [{"metric": "FD_efficientnet-lite0", "subset": "all", "guidance": np.nan, "value": 3.0, "n": 60,
                 "n_ref": 60, "extractor": "efficientnet-lite0__k", "reference": reference}]
        C.write_table(run, C.METRICS_TABLE, C.coerce(pd.DataFrame(rows), C.METRICS_TABLE))
        return run

    a = scored(_fake_run(tmp_path / "a", {7.5: 0}), "run:refs/one")
    b = scored(_fake_run(tmp_path / "b", {7.5: 0}), "run:refs/two")
    with pytest.raises(UserError, match="scored against run:refs/one and b against run:refs/two"):
        compare_runs([Side(a), Side(b)], resamples=200)
    assert set(compare_runs([Side(a), Side(b)], resamples=200, set_metrics=False).table.metric) == {
        "CLIPScore", "compositional_accuracy"}
