"""Contract test: the real writers make a tiny run, then the dashboard's readers read what they wrote.

No hand-written fixture stands in for a writer here: ``t2i-bench sweep`` (generate +
score + sweep), ``t2i-audit memorization`` and ``t2i-audit watermark`` write the run,
and ``dashboard.data`` reads it back with no error and the same numbers.
"""

import math

import pytest

from bench import contract as C

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from audit.index import build_index
    from audit.probes.memorization.run import audit_memorization
    from audit.probes.watermark.classifier import ProbeConfig, train_probe
    from audit.probes.watermark.run import audit_watermark
    from bench.features import get_extractor
    from bench.models.evaluator_clip import DEFAULT_DIR
    from bench.runspec import RunSpec
    from bench.score import ScoreSpec
    from bench.sweep import run_sweep

    base = tmp_path_factory.mktemp("contract")
    run = base / "runs" / "tiny"
    spec = RunSpec(out=str(run), model="builtin:tiny-random", prompts="shapes", per_category=1, steps=2,
                   guidance=(1.0, 3.0), batch_size=16)
    run_sweep(spec, ScoreSpec(run=str(run), reference=str(run), features=("efficientnet-lite0",), clip="builtin"),
              progress=False)
    index = base / "index"
    build_index("shapes-laion:200", index, "builtin", progress=False)
    memo = audit_memorization(run, index, k=3, progress=False)
    clip = get_extractor(f"clip:local-dir:{DEFAULT_DIR}")
    probe = train_probe(clip, ProbeConfig(n_base=40, corpus_rows=1000), progress=False)
    wm = audit_watermark(run, probe=str(probe.save(base / "probe.safetensors")), probe_features="clip",
                         progress=False)
    return base / "runs", run, memo, wm


def test_dashboard_reads_every_table_the_writers_wrote(written):
    from dashboard.data.discovery import discover_runs
    from dashboard.data.memorization import headline_mismatch, image_verdicts, load_memorization, \
        load_memorization_prompts, memorization_headline
    from dashboard.data.metrics import headline_table, load_metrics, load_sweep, tradeoff_points
    from dashboard.data.reading import load_summary
    from dashboard.data.samples import load_samples
    from dashboard.data.watermark import attach_watermark, load_watermark

    root, run, memo, wm = written
    [info] = discover_runs(root)
    assert info.name == "tiny" and info.complete and info.error is None

    samples, error = load_samples(run)
    assert error is None and samples["exists"].all() and len(samples) == 2 * 9

    metrics, error = load_metrics(run)
    assert error is None
    overall = metrics[metrics.subset == C.ALL_SUBSET]
    assert {"FD_efficientnet-lite0", "precision_efficientnet-lite0", "CLIPScore",
            "compositional_accuracy"} <= set(overall.metric)
    assert not headline_table(metrics).empty
    sweep, error = load_sweep(run)
    assert error is None and sorted(sweep.guidance) == [1.0, 3.0]
    points, why = tradeoff_points(sweep)
    assert points is not None, why

    summary, error = load_summary(run)
    assert error is None
    hits, error = load_memorization(run)
    assert error is None and len(hits) == len(memo.table)
    verdicts = image_verdicts(hits)
    headline = memorization_headline(summary, verdicts)
    assert headline["n_copies"] == memo.summary["n_copies"] and headline_mismatch(headline, verdicts) is None
    assert set(headline["thresholds"]) == {"clip_cosine", "copy_distance", "relative_distance", "k", "pool",
                                           "relative_n", "relative_alpha"}
    # without summary.json's block the reader recomputes it from the table, under the writer's names
    recomputed = memorization_headline(None, verdicts)
    assert recomputed["thresholds"]["clip_cosine"] == memo.summary["thresholds"]["clip_cosine"]
    assert recomputed["thresholds"]["copy_distance"] == memo.summary["thresholds"]["copy_distance"]
    prompts, error = load_memorization_prompts(run)
    assert error is None and prompts.n_images.sum() == memo.summary["n_images"]

    marks, error = load_watermark(run)
    assert error is None and len(marks) == wm.summary["n_images"]
    joined = attach_watermark(samples, marks)
    assert joined.visible_score.notna().all()
    assert math.isclose(float(marks.visible.astype(bool).mean()), wm.summary["visible_rate"])


def test_the_audits_recorded_by_the_writers_are_listed(written):
    from dashboard.data.audits import list_audits, load_audit_table, with_tables
    from dashboard.data.reading import load_summary

    _, run, memo, wm = written
    audits, problems = list_audits(load_summary(run)[0])
    assert problems == []
    by_name = {a.name: a for a in with_tables(run, audits)}
    assert set(by_name) == {"memorization", "watermark"}
    for name, result in (("memorization", memo), ("watermark", wm)):
        table, error = load_audit_table(run, by_name[name].table, name)
        assert error is None and len(table) == len(result.table)


def test_old_metric_names_read_under_the_new_ones(written, tmp_path):
    """A run scored before the naming rule (plain "precision"/"recall") reads with the extractor's name."""
    import shutil

    import pandas as pd

    from dashboard.data.metrics import load_metrics

    _, run, _, _ = written
    old = tmp_path / "old"
    shutil.copytree(run, old)
    table = pd.read_parquet(old / C.METRICS)
    table["metric"] = table["metric"].str.replace(r"^(precision|recall)_.*$", r"\1", regex=True)
    table.to_parquet(old / C.METRICS)
    metrics, error = load_metrics(old)
    assert error is None
    assert "precision_efficientnet-lite0" in set(metrics.metric) and "precision" not in set(metrics.metric)
