"""Property tests (hypothesis): the prompt-file parsers, the manifest reader, the compare side parser.

Any input either parses to exactly what was written or is refused with a ``UserError`` (one line);
never another exception, never a silently different prompt.  The metric-name parser's properties are in
``tests/contract/test_metric_names.py``.
"""

from __future__ import annotations

import csv
import io
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import UserError
from bench.prompts import load_prompt_set

# Prompt text: any printable characters and spaces, no line breaks or NUL (a prompt is one line), not blank.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=60)
PROMPT = TEXT.filter(lambda s: s.strip() != "")
PROMPTS = st.lists(PROMPT, min_size=1, max_size=8)
CATEGORY = st.text(alphabet=string.ascii_letters + string.digits + " _-", min_size=0, max_size=12)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@SETTINGS
@given(prompts=PROMPTS)
def test_txt_round_trip(tmp_path, prompts):
    path = _write(tmp_path, "p.txt", "\n".join(prompts).encode("utf-8"))
    assert [p.prompt for p in load_prompt_set(path).prompts] == prompts


@SETTINGS
@given(rows=st.lists(st.tuples(PROMPT, CATEGORY), min_size=1, max_size=8))
def test_csv_round_trip(tmp_path, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["prompt", "category"])
    writer.writerows(rows)
    loaded = load_prompt_set(_write(tmp_path, "p.csv", buffer.getvalue().encode("utf-8"))).prompts
    assert [(p.prompt, p.category) for p in loaded] == [(text, category.strip()) for text, category in rows]


@SETTINGS
@given(rows=st.lists(st.tuples(PROMPT, CATEGORY), min_size=1, max_size=8))
def test_jsonl_round_trip(tmp_path, rows):
    lines = [json.dumps({"prompt": text, "category": category}) for text, category in rows]
    loaded = load_prompt_set(_write(tmp_path, "p.jsonl", "\n".join(lines).encode("utf-8"))).prompts
    assert [(p.prompt, p.category) for p in loaded] == [(text, category.strip()) for text, category in rows]


@SETTINGS
@given(data=st.binary(max_size=200), suffix=st.sampled_from(["txt", "csv", "tsv", "jsonl"]))
def test_any_bytes_parse_or_are_refused_in_one_line(tmp_path, data, suffix):
    path = _write(tmp_path, f"p.{suffix}", data)
    try:
        prompts = load_prompt_set(path).prompts
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert prompts and all(p.prompt.strip() and "\x00" not in p.prompt for p in prompts)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=120), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8), lambda c: st.lists(c, max_size=3)
    | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8))))
def test_manifest_reader_returns_a_dict_or_refuses(tmp_path, data):
    from bench import contract as C
    from bench.rundir import read_manifest

    (tmp_path / C.MANIFEST).write_bytes(data)
    try:
        manifest = read_manifest(tmp_path)
    except UserError as exc:
        assert "\n" not in str(exc) and C.MANIFEST in str(exc)
        return
    assert isinstance(manifest, dict)


@SETTINGS
@given(name=st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20),
       guidance=st.floats(min_value=0, max_value=50, allow_nan=False))
def test_compare_side_round_trip(name, guidance):
    from pathlib import Path

    from bench.compare import parse_side

    side = parse_side(f"/nonexistent/{name}@{guidance!r}")
    assert side.run == Path(f"/nonexistent/{name}") and side.guidance == pytest.approx(guidance)
