"""The unsafe-content probe (audit.probes.unsafe): real NudeNet and Open-NSFW on small images.

Clean shapes-world renders give a rate of 0 with the Wilson upper bound of n images; a real
photograph shipped by scikit-image is judged safe; too-small and unreadable images are counted
apart, never as safe; bad input is one ``error:`` line with exit code 2.  Each ONNX model is
loaded once for the module.
"""

import math
import shutil

import numpy as np
import pytest
from PIL import Image

from audit.probes.unsafe import PROBE
from audit.probes.unsafe.classifiers import (EXPOSED_LABELS, NSFW_THRESHOLD, NUDITY_THRESHOLD, exposed_scores,
                                             load_classifiers)
from audit.probes.unsafe.run import UnsafeConfig, audit_unsafe, judge, summarize
from audit.probes.unsafe.stats import Z95, wilson_interval
from bench import contract as C
from bench.errors import UserError
from bench.importer import import_images
from bench.world import random_scene, render
from conftest import run_cli

N_CLEAN = 24


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers()


def _import(tmp, images: dict[str, Image.Image], categories: dict[str, str]):
    folder = tmp / "images"
    folder.mkdir()
    for name, image in images.items():
        image.save(folder / f"{name}.png")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "{name}", "prompt": "picture {name}", "category": "{categories[name]}"}}\n'
                               for name in images))
    return import_images(str(folder), str(prompts), "test-model", str(tmp / "run")).run_dir


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """N_CLEAN 64 px shapes-world renders, imported into a run, in two prompt categories."""
    rng = np.random.default_rng(2024)
    images = {f"scene{i:02d}": render(random_scene(rng)) for i in range(N_CLEAN)}
    return _import(tmp_path_factory.mktemp("clean"), images,
                   {name: ("counting" if i % 2 else "colors") for i, name in enumerate(images)})


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()  # 512 x 512 RGB, a real (non-nude) photograph shipped by scikit-image


# ------------------------------------------------------------------ pure parts


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(1, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.0179, 0.4042)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 24) == pytest.approx((0.0, Z95**2 / (24 + Z95**2)), abs=1e-15)
    assert wilson_interval(24, 24) == (24 / (24 + Z95**2), 1.0)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


class _Stub:
    """Fixed scores and detections in place of the detectors: the verdict rule alone."""

    def __init__(self, nsfw, detections):
        self.open_nsfw = type("N", (), {"scores": lambda _, ims: np.asarray(nsfw[: len(ims)], float)})()
        self.nudenet = type("D", (), {"detect": lambda _, ims: detections[: len(ims)]})()


def test_verdict_is_either_detector_at_or_above_its_threshold():
    box = [0, 0, 1, 1]
    detections = [
        [],
        [{"class": "FACE_FEMALE", "score": 0.95, "box": box}, {"class": "BELLY_EXPOSED", "score": 0.9, "box": box}],
        [{"class": "BUTTOCKS_EXPOSED", "score": 0.45, "box": box}, {"class": "BUTTOCKS_EXPOSED", "score": 0.6, "box": box}],
        [],
        [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.3, "box": box}],
    ]
    nsfw = [0.1, 0.1, 0.1, 0.8, 0.79]
    verdicts = judge([np.zeros((64, 64, 3), np.uint8)] * 5, _Stub(nsfw, detections))
    assert [v.unsafe for v in verdicts] == [False, False, True, True, False]
    assert [v.nudity_score for v in verdicts] == [0.0, 0.0, 0.6, 0.0, 0.3]  # faces and bellies never count
    assert [v.nudity_labels for v in verdicts] == ["", "", "BUTTOCKS_EXPOSED", "", ""]
    strict = judge([np.zeros((64, 64, 3), np.uint8)] * 5, _Stub(nsfw, detections),
                   UnsafeConfig(nsfw_threshold=0.0, nudity_threshold=1.0))
    assert all(v.unsafe for v in strict)
    assert exposed_scores(detections[2]) == {"BUTTOCKS_EXPOSED": 0.6}


@pytest.mark.parametrize("kwargs, needle", [
    ({"nsfw_threshold": math.nan}, "--nsfw-threshold"), ({"nudity_threshold": 1.5}, "--nudity-threshold"),
    ({"nsfw_threshold": -0.1}, "between 0 and 1"), ({"nudity_threshold": "high"}, "must be a number"),
    ({"min_size": -1}, "--min-size"), ({"min_size": 2.5}, "whole number"),
])
def test_config_refuses_bad_settings(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        UnsafeConfig(**kwargs)


# ------------------------------------------------------------------ the real detectors


def test_nudenet_adapter_equals_the_package_reading_the_file(tmp_path, classifiers, astronaut):
    """The adapter hands NudeNet what cv2.imread gives it: the same detections as detect(path)."""
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    assert classifiers.nudenet.detect([astronaut]) == [classifiers.nudenet._detector.detect(str(path))]


def test_real_photograph_is_judged_safe(classifiers, astronaut):
    """skimage's astronaut (Eileen Collins in a space suit): safe, and NudeNet does see a person in it."""
    [verdict] = judge([astronaut], classifiers)
    assert verdict.unsafe is False and verdict.nudity_labels == ""
    assert verdict.nsfw_score < 0.2, verdict  # Yahoo's "likely safe" band
    assert verdict.nudity_score < NUDITY_THRESHOLD
    [found] = classifiers.nudenet.detect([astronaut])
    assert any(d["class"] == "FACE_FEMALE" and d["score"] > 0.5 for d in found), found


def test_clean_renders_have_rate_zero(clean_run, classifiers):
    result = audit_unsafe(clean_run, classifiers=classifiers, progress=False)
    s = result.summary
    upper = Z95**2 / (N_CLEAN + Z95**2)  # Wilson upper bound of 0 of N_CLEAN
    assert (s["n_images"], s["n_judged"], s["n_not_judged"], s["n_unsafe"]) == (N_CLEAN, N_CLEAN, 0, 0)
    assert s["unsafe_rate"] == 0.0 and s["unsafe_ci"] == [0.0, pytest.approx(upper)]
    assert s["nsfw_rate"] == 0.0 and s["nudity_rate"] == 0.0 and s["n_nsfw_undecided"] == 0
    assert s["not_judged_reasons"] == {"too_small": 0, "unreadable": 0}
    assert set(s["by_category"]) == {"colors", "counting"}
    for block in s["by_category"].values():
        n = block["n_judged"]
        assert n == N_CLEAN // 2 and block["unsafe_rate"] == 0.0
        assert block["unsafe_ci"] == [0.0, pytest.approx(Z95**2 / (n + Z95**2))]
    assert s["thresholds"]["nsfw"]["value"] == NSFW_THRESHOLD and "open_nsfw" in s["thresholds"]["nsfw"]["source"]
    assert s["thresholds"]["nudity"]["labels"] == list(EXPOSED_LABELS)
    assert s["classifiers"]["nudenet"]["version"] and len(s["classifiers"]["open_nsfw"]["sha256"]) == 64

    table = C.read_table(clean_run, C.UNSAFE_TABLE)
    assert len(table) == N_CLEAN and table["judged"].all() and not table["unsafe"].any()
    assert (table["nsfw_score"] < 0.2).all() and (table["nudity_score"] < NUDITY_THRESHOLD).all()
    summary = C.read_summary(clean_run)
    assert summary["unsafe"]["unsafe_rate"] == 0.0 and summary[C.AUDITS_KEY]["unsafe"] == PROBE.declared()
    assert PROBE.headline == "unsafe_rate" and PROBE.higher_is_better is False
    # The summary is a function of the table: a reader can rebuild it from the file.
    assert summarize(table, result.config, s["classifiers"]) == s


def test_unjudgeable_images_are_counted_apart(tmp_path, classifiers, astronaut):
    rng = np.random.default_rng(7)
    images = {"photo": Image.fromarray(astronaut), "scene": render(random_scene(rng)),
              "tiny": render(random_scene(rng), size=16), "broken": render(random_scene(rng))}
    run = _import(tmp_path, images, {"photo": "people", "scene": "shapes", "tiny": "shapes", "broken": "shapes"})
    (run / "images" / "broken__s000__gna.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png any more")

    s = audit_unsafe(run, classifiers=classifiers, progress=False).summary
    assert (s["n_images"], s["n_judged"], s["n_not_judged"], s["n_unsafe"]) == (4, 2, 2, 0)
    assert s["not_judged_reasons"] == {"too_small": 1, "unreadable": 1}
    assert s["unsafe_ci"] == [0.0, pytest.approx(Z95**2 / (2 + Z95**2))]  # over the 2 judged, not the 4
    assert s["by_category"]["shapes"] == {"n_images": 3, "n_judged": 1, "n_unsafe": 0, "unsafe_rate": 0.0,
                                          "unsafe_ci": [0.0, pytest.approx(Z95**2 / (1 + Z95**2))]}
    table = C.read_table(run, C.UNSAFE_TABLE).set_index("prompt_id")
    assert table.loc["photo", "judged"] and table.loc["photo", "unsafe"] is False
    for name, kind in (("tiny", "too_small: 16x16 px"), ("broken", "unreadable: ")):
        row = table.loc[name]
        assert not row["judged"] and row["unsafe"] is None and row["reason"].startswith(kind), row["reason"]
        assert math.isnan(row["nsfw_score"]) and math.isnan(row["nudity_score"])

    # --min-size 8 judges the 16 px image; a floor above every image judges none and gives no rate.
    assert audit_unsafe(run, UnsafeConfig(min_size=8), classifiers=classifiers, progress=False).summary[
        "not_judged_reasons"] == {"too_small": 0, "unreadable": 1}
    none = audit_unsafe(run, UnsafeConfig(min_size=4096), classifiers=classifiers, progress=False).summary
    assert none["n_judged"] == 0 and none["unsafe_rate"] is None and none["unsafe_ci"] is None


# ------------------------------------------------------------------ the command line


def test_cli_audits_a_run(tmp_path, clean_run):
    from audit.probes import PROBES

    assert PROBES.get("unsafe") is PROBE
    run = shutil.copytree(clean_run, tmp_path / "run", ignore=shutil.ignore_patterns("audit"))
    proc = run_cli("-m", "audit.cli", "unsafe", str(run), "--no-progress", "--nudity-threshold", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert f"0 of {N_CLEAN} judged images" in proc.stdout and "unsafe.parquet" in proc.stdout
    assert C.read_summary(run)["unsafe"]["thresholds"]["nudity"]["value"] == 0.5
    assert len(C.read_table(run, C.UNSAFE_TABLE)) == N_CLEAN


@pytest.mark.parametrize("args, needle", [
    (["{missing}"], "does not exist"),
    (["{empty}"], "is not a run directory"),
    (["{run}", "--nsfw-threshold", "nan"], "--nsfw-threshold: nan is not a finite number"),
    (["{run}", "--nudity-threshold", "1.5"], "--nudity-threshold must be between 0 and 1"),
    (["{run}", "--nsfw-threshold", "high"], "must be a number"),
    (["{run}", "--min-size", "-3"], "--min-size"),
], ids=["missing-run", "not-a-run", "nan-threshold", "threshold-above-1", "threshold-not-a-number", "negative-min-size"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, clean_run, args, needle):
    run = shutil.copytree(clean_run, tmp_path / "run", ignore=shutil.ignore_patterns("audit"))
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "run": run}
    summary_before = (run / C.SUMMARY).read_bytes()
    proc = run_cli("-m", "audit.cli", "unsafe", *[a.format(**paths) for a in args], "--no-progress")
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert not (run / C.UNSAFE_TABLE.file).exists()  # refused before anything was written
    assert (run / C.SUMMARY).read_bytes() == summary_before
