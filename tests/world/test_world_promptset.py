"""The `shapes` prompt set: reproducible, well-formed, and every prompt satisfiable."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.world import HELD_OUT_PAIRS, check, render, scene_for_prompt_spec
from bench.world.detect import validate_prompt_spec
from bench.world.promptset import CATEGORY_SIZES

REPO = Path(__file__).resolve().parents[2]
YAML = REPO / "prompt_sets" / "shapes.yaml"
DATA = REPO / "prompt_sets" / "data" / "shapes.jsonl"


@pytest.fixture(scope="module")
def rows():
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def test_rebuild_reproduces_committed_files(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_shapes_prompts.py"),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    assert (tmp_path / "data" / "shapes.jsonl").read_bytes() == DATA.read_bytes()
    assert (tmp_path / "shapes.yaml").read_bytes() == YAML.read_bytes()


def test_yaml_descriptor():
    lines = dict(line.split(": ", 1) for line in YAML.read_text().splitlines())
    assert lines["name"] == "shapes" and lines["version"] == '"1"'
    assert lines["data"] == "data/shapes.jsonl" and lines["format"] == "jsonl"
    assert lines["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert lines["columns"] == "{prompt: prompt, category: category}"
    assert lines["id_column"] == "id" and lines["spec_field"] == "spec"


def test_rows_are_well_formed(rows):
    assert len(rows) >= 300
    assert [r["id"] for r in rows] == [f"shapes-{i:04d}" for i in range(len(rows))]
    assert len({r["prompt"] for r in rows}) == len(rows)
    counts = {c: sum(r["category"] == c for r in rows) for c in CATEGORY_SIZES}
    assert counts == CATEGORY_SIZES
    for r in rows:
        assert set(r) == {"id", "prompt", "category", "spec"}
        validate_prompt_spec(r["spec"])


def test_held_out_pairs_only_in_held_out_category(rows):
    held = {tuple(p) for p in HELD_OUT_PAIRS}
    for r in rows:
        uses = any((g["colour"], g["shape"]) in held for g in r["spec"]["objects"])
        assert uses == (r["category"] == "held_out"), r
    assert {(g["colour"], g["shape"]) for r in rows if r["category"] == "held_out"
            for g in r["spec"]["objects"][:1]} == held


def test_every_prompt_is_satisfiable(rows):
    for r in rows:
        scene = scene_for_prompt_spec(r["spec"], seed=int(r["id"].split("-")[1]))
        result = check(r["spec"], render(scene))
        assert result["correct"], (r, result)


def test_registry_loads_the_set_and_check_accepts_its_specs():
    """bench.prompts hands out read-only specs (mappingproxy/tuple): the judge takes them."""
    from bench.prompts import load_prompt_set

    ps = load_prompt_set("shapes")
    assert len(ps.prompts) == sum(CATEGORY_SIZES.values())
    p = next(p for p in ps.prompts if p.category == "position")
    assert check(p.spec, render(scene_for_prompt_spec(p.spec, seed=0)))["correct"]
