"""`t2i-bench score`: one pass of features feeding every metric, written to metrics.parquet."""

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.generate import generate
from bench.runspec import RunSpec
from bench.score import ScoreSpec, score_run


@pytest.fixture(scope="module")
def shapes_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    common = dict(model="builtin:tiny-random", prompts="shapes", per_category=1, steps=2, images_per_prompt=2, batch_size=16)
    run = generate(RunSpec(out=str(root / "run"), guidance=(1.0, 3.0), **common), progress=False).run_dir
    ref = generate(RunSpec(out=str(root / "ref"), guidance=(1.0,), seed=7, **common), progress=False).run_dir
    return run, ref


def test_score_writes_metrics_per_guidance(shapes_runs):
    run, ref = shapes_runs
    table = score_run(ScoreSpec(run=str(run), reference=str(ref), features=("efficientnet-lite0",)), progress=False)
    assert (run / "metrics.parquet").exists()
    written = pd.read_parquet(run / "metrics.parquet")
    assert len(written) == len(table)
    overall = written[written.subset == "all"]
    fd_rows = overall[overall.metric == "FD_efficientnet-lite0"]
    assert sorted(fd_rows.guidance.fillna(-1)) == [-1, 1.0, 3.0]
    assert set(overall.metric) >= {"FD_efficientnet-lite0", "KID_efficientnet-lite0", "precision_efficientnet-lite0",
                                   "recall_efficientnet-lite0", "compositional_accuracy"}
    comp = written[(written.metric == "compositional_accuracy") & written.subset.str.startswith("category=")]
    assert comp.value.between(0, 1).all() and len(comp) >= 9

    # the FD in the table is the FD of the cached features (one pass, no recomputation)
    features = sorted((run / "features").glob("efficientnet-lite0*.npy"))
    assert len(features) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["all"]["FD_efficientnet-lite0"] == pytest.approx(fd_rows[fd_rows.guidance.isna()].value.item())
    assert summary["n_images"] == 2 * 9 * 2


def test_two_extractors_keep_their_own_precision_and_recall(shapes_runs):
    """With two --features extractors every feature metric carries its extractor: before the naming rule,
    both wrote "precision"/"recall", summary.json kept the last value and the dashboard the first."""
    from bench.models.evaluator_clip import DEFAULT_DIR

    run, ref = shapes_runs
    clip_spec = f"clip:local-dir:{DEFAULT_DIR}"
    table = score_run(ScoreSpec(run=str(run), reference=str(ref), features=("efficientnet-lite0", clip_spec)),
                      progress=False)
    overall = table[(table.subset == "all") & table.guidance.isna()]
    clip_name = overall[overall.extractor.str.startswith("clip") & overall.metric.str.startswith("FD_")].metric.item()[3:]
    by_name = dict(zip(overall.metric, overall.value))
    for base in ("precision", "recall"):
        assert f"{base}_efficientnet-lite0" in by_name and f"{base}_{clip_name}" in by_name
        assert base not in by_name
    assert overall.metric.is_unique
    headline = json.loads((run / "summary.json").read_text())["metrics"]["all"]
    for name, value in by_name.items():
        assert headline[name] == pytest.approx(value)


def test_score_against_itself_gives_zero_fd(shapes_runs):
    run, _ = shapes_runs
    table = score_run(ScoreSpec(run=str(run), reference=str(run), features=("efficientnet-lite0",)), progress=False)
    value = table[(table.metric == "FD_efficientnet-lite0") & table.guidance.isna()].value.item()
    # N=36 < d=1280: the covariance is singular and sqrtm leaves ~1e-5 of rounding (FD to another run is ~30)
    assert abs(value) < 1e-4


def test_npz_reference_from_another_extractor_is_refused(shapes_runs, tmp_path, capsys):
    run, _ = shapes_runs
    from bench.metrics.fid import GaussianStats
    from bench.features.base import FeatureSet

    stats = GaussianStats.from_features(FeatureSet(np.random.default_rng(0).normal(size=(20, 4)), "other__wabc__x__float32"))
    stats.save_npz(tmp_path / "ref.npz")
    code = main(["score", str(run), "--reference", str(tmp_path / "ref.npz"), "--features", "efficientnet-lite0", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err


def test_score_bad_input(tmp_path, shapes_runs):
    with pytest.raises(UserError, match="not a run directory"):
        score_run(ScoreSpec(run=str(tmp_path), features=("efficientnet-lite0",)))
    run, _ = shapes_runs
    with pytest.raises(UserError, match="does not exist"):
        score_run(ScoreSpec(run=str(run), reference=str(tmp_path / "nope"), features=("efficientnet-lite0",)))


def test_sweep_reuses_images_and_writes_table_and_plot(shapes_runs, tmp_path, capsys):
    run, ref = shapes_runs
    import shutil

    out = tmp_path / "sweep"
    shutil.copytree(run, out)  # guidance 1 and 3 exist already: only 2 is generated
    before = {p.name: p.read_bytes() for p in (out / "images").glob("*.png")}
    code = main(["sweep", "--model", "builtin:tiny-random", "--prompts", "shapes", "--per-category", "1", "--steps", "2", "--images-per-prompt", "2",
                 "--batch-size", "16", "--guidance", "1,2,3", "--reference", str(ref), "--features", "efficientnet-lite0",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in (out / "images").glob("*.png")}
    assert len(after) == len(before) * 3 // 2 and all(after[k] == v for k, v in before.items())
    table = pd.read_parquet(out / "sweep.parquet")
    assert table.guidance.tolist() == [1.0, 2.0, 3.0]
    assert table["FD_efficientnet-lite0"].notna().all() and table["compositional_accuracy"].between(0, 1).all()
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_world_reference_renders_satisfy_their_specs(tmp_path, capsys):
    from PIL import Image

    from bench.prompts import load_prompt_set
    from bench.world import check

    assert main(["reference", "--prompts", "shapes", "--per-category", "1", "--images-per-prompt", "2",
                 "--out", str(tmp_path / "ref")]) == 0
    prompts = {p.id: p for p in load_prompt_set("shapes").subset(per_category=1).prompts}
    files = sorted((tmp_path / "ref").glob("*.png"))
    assert len(files) == 2 * len(prompts)
    verdicts = [check(prompts[f.stem.rsplit("_", 1)[0]].spec, Image.open(f))["correct"] for f in files]
    assert all(verdicts)


def test_clip_score_and_cmmd_through_a_local_open_clip(shapes_runs, tmp_path):
    from bench.models.tiny import write_random_open_clip

    run, ref = shapes_runs
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    clip_dir = write_random_open_clip(tmp_path / "clip", cfg)
    table = score_run(ScoreSpec(run=str(run), reference=str(ref), features=(), clip=f"local-dir:{clip_dir}"), progress=False)
    overall = table[table.subset == "all"]
    clip = overall[overall.metric == "CLIPScore"]
    assert sorted(clip.guidance.fillna(-1)) == [-1, 1.0, 3.0]
    assert clip.value.between(0, 100).all()
    assert (overall.metric == "CMMD").sum() == 3
    per_category = table[(table.metric == "CLIPScore") & table.subset.str.startswith("category=")]
    assert len(per_category) == 3 * 9


def test_score_writes_intervals_and_old_tables_still_read(shapes_runs, tmp_path):
    from bench import contract as C

    run, ref = shapes_runs
    spec = ScoreSpec(run=str(run), reference=str(ref), features=("efficientnet-lite0",), bootstrap=200, seed=3)
    table = score_run(spec, progress=False)
    written = C.read_table(run, C.METRICS_TABLE)
    # metrics.parquet also keeps the rows of other references scored before (keyed by reference)
    written = written[written.reference.isna() | (written.reference == f"run:{ref}")]
    has = written[written.ci_method != ""]
    assert set(has.metric) >= {"FD_efficientnet-lite0", "KID_efficientnet-lite0", "precision_efficientnet-lite0",
                               "recall_efficientnet-lite0", "compositional_accuracy"}
    assert (has.ci_low <= has.ci_high).all() and has.ci_method.str.contains("seed 3").all()
    fd_all = has[(has.metric == "FD_efficientnet-lite0") & has.guidance.isna()].iloc[0]
    # 36 images << d = 1280: the value stays flagged, and so is the interval (the resamples are biased upward)
    assert "generated images" in fd_all.ci_method and "N=36 <= d=1280" in fd_all.ci_method
    comp = has[has.metric == "compositional_accuracy"]
    assert ((comp.ci_low <= comp.value) & (comp.value <= comp.ci_high)).all()
    assert comp.ci_method.str.contains("over prompts").all() and (comp.subset != "all").any()
    again = score_run(spec, progress=False)
    pd.testing.assert_frame_equal(table, again)  # same seed, same intervals
    off = score_run(ScoreSpec(run=str(run), reference=str(ref), features=("efficientnet-lite0",), bootstrap=0),
                    progress=False)
    assert off.ci_low.isna().all() and (off.ci_method == "").all()

    # a metrics.parquet written before intervals existed still reads, with empty intervals
    old = tmp_path / "old"
    old.mkdir()
    written.drop(columns=["ci_low", "ci_high", "ci_method", "n_for_1pct"]).to_parquet(old / C.METRICS)
    back = C.read_table(old, C.METRICS_TABLE)
    assert back.ci_low.isna().all() and back.n_for_1pct.isna().all() and (back.ci_method == "").all()


def test_sweep_table_carries_one_interval_pair_per_metric():
    from bench.sweep import sweep_table

    metrics = pd.DataFrame({"metric": ["FD_x", "FD_x", "CLIPScore", "CLIPScore"], "subset": "all",
                            "guidance": [1.0, 3.0, 1.0, 3.0], "value": [10.0, 12.0, 30.0, 31.0],
                            "ci_low": [9.0, 11.0, 29.0, 30.0], "ci_high": [11.0, 13.0, 31.0, 32.0]})
    table = sweep_table(metrics, [1.0, 3.0])
    assert sorted(table.columns) == sorted(["guidance", "CLIPScore", "FD_x", "CLIPScore_ci_low", "FD_x_ci_low",
                                            "CLIPScore_ci_high", "FD_x_ci_high"])
    assert table.FD_x_ci_high.tolist() == [11.0, 13.0]
