"""Prompt-set registry, shipped sets, user files and the ``prompts`` CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import prompt_sets
from bench.cli_prompts import add_prompts_parser
from bench.errors import UserError
from bench.prompts import Prompt, PromptSet, list_prompt_sets, load_prompt_set, registry, validate_file

REPO = Path(__file__).resolve().parent.parent

# From prompt_sets/data/SOURCES.md.
DRAWBENCH_COUNTS = {
    "Colors": 25, "Conflicting": 10, "Counting": 19, "DALL-E": 20, "Descriptions": 20,
    "Gary Marcus et al.": 10, "Misspellings": 10, "Positional": 20, "Rare Words": 7,
    "Reddit": 38, "Text": 21,
}
GENEVAL_TAGS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}


@pytest.fixture
def write(tmp_path):
    """write(name, text_or_bytes) -> path of a file in a temporary folder."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture
def cli(capsys):
    """cli("show", "drawbench") -> (exit code, stdout); UserError propagates."""
    parser = argparse.ArgumentParser(prog="t2i-bench")
    add_prompts_parser(parser.add_subparsers(dest="command"))

    def _run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(["prompts", *argv])
        code = args.func(args)
        return code, capsys.readouterr().out

    return _run


# --------------------------------------------------------------------------- shipped sets


def test_drawbench_counts_and_stripped_labels():
    ps = load_prompt_set("drawbench")
    assert len(ps) == 200
    assert Counter(p.category for p in ps) == DRAWBENCH_COUNTS
    assert "Gary Marcus et al." in ps.categories()
    assert len({p.prompt for p in ps}) == 200
    assert ps.prompts[0] == Prompt("drawbench-0000", "A red colored car.", "Colors")
    assert ps.sha256 and ps.license.startswith("unspecified")


def test_parti_counts_and_extra():
    ps = load_prompt_set("parti")
    assert len(ps) == 1632 and len(ps.categories()) == 12
    assert Counter(p.category for p in ps)["Animals"] == 314
    assert Counter(p.extra["Challenge"] for p in ps)["Fine-grained Detail"] == 312
    # TSV has no quoting: this prompt keeps its quotes.
    assert any(p.prompt.startswith('"G I G G L E"') for p in ps)


def test_geneval_has_specs():
    ps = load_prompt_set("geneval")
    assert len(ps) == 553
    assert Counter(p.category for p in ps) == GENEVAL_TAGS
    assert all(p.spec and p.spec["include"] for p in ps)
    assert sum("exclude" in p.spec for p in ps) == 80
    d = ps.prompts[0].to_dict()
    assert d["spec"] == {"include": [{"class": "bench", "count": 1}]}
    json.dumps(d)  # plain types, serialisable


def test_professions_has_bls_shares():
    ps = load_prompt_set("professions")
    assert len(ps) > 150
    assert set(ps.categories()) == {"dalleval", "stable-bias", "both"}
    by_id = {p.id: p for p in ps}
    assert by_id["accountant"].prompt == "a photo of an accountant"
    assert by_id["accountant"].extra["bls_pct_female"] == 59.7
    assert by_id["it-specialist"].prompt == "a photo of an IT specialist"
    with_bls = [p for p in ps if p.extra["bls_pct_female"] is not None]
    assert 10 < len(with_bls) < len(ps)
    assert all(p.extra["bls_year"] in (2015, 2016) for p in with_bls)


def test_build_professions_reproduces_committed_file(tmp_path):
    out = tmp_path / "professions.jsonl"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_professions.py"), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "unique professions" in result.stdout
    assert out.read_bytes() == (REPO / "prompt_sets" / "data" / "professions.jsonl").read_bytes()


def test_registry_and_list():
    reg = registry()
    assert {"drawbench", "parti", "geneval", "professions"} <= set(reg)
    sets = list_prompt_sets()
    assert [s.name for s in sets] == sorted(reg)
    for s in sets:
        assert s.source and s.license, s.name


def test_prompts_are_immutable():
    p = load_prompt_set("parti").prompts[0]
    with pytest.raises(TypeError):
        p.extra["Note"] = "x"
    hash(p)
    spec = load_prompt_set("geneval").prompts[0].spec
    with pytest.raises(TypeError):
        spec["include"][0]["count"] = 2


# --------------------------------------------------------------------------- registry errors


def _copy_set(tmp_path: Path, name: str) -> Path:
    """Copy a shipped yaml and its data file into tmp_path; return the yaml."""
    src = registry()[name]
    (tmp_path / "data").mkdir(exist_ok=True)
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    for data in (src.parent / "data").glob("DrawBench*"):
        shutil.copyfile(data, tmp_path / "data" / data.name)
    return dst


def test_sha256_mismatch_is_caught(tmp_path):
    yaml_path = _copy_set(tmp_path, "drawbench")
    assert validate_file(yaml_path).name == "drawbench"
    data = tmp_path / "data" / "DrawBench_Prompts.csv"
    raw = bytearray(data.read_bytes())
    raw[20] ^= 0x01  # one byte in the first prompt
    data.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"sha256 mismatch for data file data/DrawBench_Prompts.csv: expected \w+, actual \w+"):
        validate_file(yaml_path)


def test_missing_sha256_says_what_to_add(tmp_path):
    yaml_path = _copy_set(tmp_path, "drawbench")
    text = "\n".join(l for l in yaml_path.read_text().splitlines() if not l.startswith("sha256"))
    yaml_path.write_text(text)
    with pytest.raises(UserError, match="add the line: sha256: [0-9a-f]{64}"):
        validate_file(yaml_path)


def test_duplicate_set_names_rejected(tmp_path, monkeypatch):
    _copy_set(tmp_path, "drawbench")
    shutil.copyfile(tmp_path / "drawbench.yaml", tmp_path / "drawbench_copy.yaml")
    monkeypatch.setattr(prompt_sets, "PROMPT_SETS_DIR", tmp_path)
    with pytest.raises(UserError, match="'drawbench' is defined twice, in drawbench.yaml and drawbench_copy.yaml"):
        registry()


def test_unknown_name_suggests_close_one():
    with pytest.raises(UserError, match=r"unknown prompt set 'drawbnch'; did you mean 'drawbench'\?"):
        load_prompt_set("drawbnch")
    with pytest.raises(UserError, match="known sets: .*drawbench"):
        load_prompt_set("zzzzzz")


def test_missing_path_says_file_missing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_prompt_set(str(tmp_path / "nope.csv"))
    with pytest.raises(UserError, match="does not exist"):
        load_prompt_set("my_prompts.txt")


def test_yaml_errors_are_one_line(write):
    with pytest.raises(UserError, match="unknown key.*extra_colums"):
        validate_file(write("a.yaml", "name: a\nversion: '1'\nextra_colums: []\nprompts: [x]\n"))
    with pytest.raises(UserError, match='quote it: version: "1.1"'):
        validate_file(write("b.yaml", "name: b\nversion: 1.10\nprompts: [x]\n"))
    with pytest.raises(UserError, match="invalid YAML at line"):
        validate_file(write("c.yaml", "name: [unclosed\n"))


# --------------------------------------------------------------------------- user files


def test_txt_file(write):
    ps = load_prompt_set(str(write("my prompts.txt", "a red cube\n\n  \r\ntwo blue balls\r\n")))
    assert [p.prompt for p in ps] == ["a red cube", "two blue balls"]
    assert [p.id for p in ps] == ["my_prompts-0000", "my_prompts-0001"]
    assert ps.name == "my prompts" and ps.version == "file" and ps.categories() == []
    assert len(ps.sha256) == 64 and ps.source.endswith("my prompts.txt")


def test_csv_file(write):
    path = write("p.csv", '\ufeffText,Category,id,seed\n"a cat, sitting",animals ,c1,3\na dog,animals,c2,4\n')
    ps = validate_file(path)
    assert [p.id for p in ps] == ["c1", "c2"]
    assert ps.prompts[0].prompt == "a cat, sitting"
    assert ps.prompts[0].category == "animals"
    assert dict(ps.prompts[0].extra) == {"seed": "3"}


def test_tsv_file_keeps_quotes(write):
    ps = validate_file(write("p.tsv", 'caption\tnote\n"HELLO" written on a wall\tx\n'))
    assert ps.prompts[0].prompt == '"HELLO" written on a wall'
    assert dict(ps.prompts[0].extra) == {"note": "x"}


def test_jsonl_file(write):
    rows = [
        {"id": "a", "prompt": "one red cube", "category": "counting", "spec": {"objects": [{"shape": "cube"}]}},
        {"id": "b", "prompt": "a blue ball", "difficulty": 2},
    ]
    ps = validate_file(write("p.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n"))
    assert ps.prompts[0].spec["objects"][0]["shape"] == "cube"
    assert ps.prompts[1].spec is None and ps.prompts[1].extra["difficulty"] == 2
    assert ps.categories() == ["counting"]


def test_inline_yaml_file(write):
    path = write("mine.yaml", "name: mine\nversion: 2\nprompts:\n  - a red cube\n  - {prompt: two balls, category: counting}\n")
    ps = validate_file(path)
    assert ps.name == "mine" and ps.version == "2" and len(ps) == 2
    # Reformatting the yaml keeps the hash (it is that of the rows).
    again = validate_file(write("mine2.yaml", "name: mine\nversion: 2\nprompts: [a red cube, {category: counting, prompt: two balls}]\n"))
    assert again.sha256 == ps.sha256


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("latin1.txt", "caf\u00e9 au lait\n".encode("latin-1"), r"not UTF-8 \(byte 0xe9 at offset 3, line 1\); re-save the file as UTF-8"),
        ("latin1.csv", "prompt\nok\ncaf\u00e9\n".encode("latin-1"), "line 3.*re-save the file as UTF-8"),
        ("nocol.csv", "description,category\na cat,animals\n", "no prompt column.*columns found: description, category"),
        ("empty.txt", "", "the file is empty"),
        ("blank.jsonl", "\n \n", "the file is empty"),
        ("header_only.csv", "prompt,category\n", "no prompts found"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": "b",}\n', "line 2 is not valid JSON"),
        ("list.jsonl", '["a"]\n', "line 1 is a JSON list"),
        ("dupes.csv", "prompt,id\na,x\nb,y\nc,x\n", "duplicate prompt id 'x' on line 2 and line 4"),
        ("dupes.jsonl", '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n', "duplicate prompt id 'x'"),
        ("emptyprompt.csv", "prompt,category\na,b\n ,c\n", "empty prompt on line 3"),
        ("badid.csv", "prompt,id\na,../etc\n", "not file-name safe"),
        ("fields.csv", "prompt\na, b\n", "line 2 has 2 fields but the header has 1"),
        ("prompts.docx", "x", "unsupported file type '.docx'"),
    ],
)
def test_bad_user_files(write, name, content, message):
    path = write(name, content)
    with pytest.raises(UserError, match=message) as info:
        load_prompt_set(str(path))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- subsets


def test_subset_by_category_and_per_category():
    ps = load_prompt_set("drawbench")
    sub = ps.subset(["colors", "Counting"])
    assert len(sub) == 25 + 19 and sub.categories() == ["Colors", "Counting"]
    assert sub.selection == "categories=Colors,Counting"
    assert (sub.name, sub.version, sub.sha256) == (ps.name, ps.version, ps.sha256)

    two = ps.subset(per_category=2)
    assert len(two) == 22 and Counter(p.category for p in two) == {c: 2 for c in DRAWBENCH_COUNTS}
    assert two.prompts[:2] == ps.prompts[:2]  # the first N, in file order

    both = ps.subset(["Rare Words"], per_category=100)
    assert len(both) == 7 and both.selection == "categories=Rare Words;per_category=100"
    assert ps.subset() is ps and ps.selection == ""


def test_subset_errors():
    ps = load_prompt_set("drawbench")
    with pytest.raises(UserError, match="no category 'Colours'; valid categories: Colors, Conflicting"):
        ps.subset(["Colours"])
    with pytest.raises(UserError, match=">= 1"):
        ps.subset(per_category=0)


def test_prompt_set_rejects_duplicate_ids():
    with pytest.raises(ValueError):
        PromptSet("x", "1", "", "", "", "0" * 64, (Prompt("a", "p"), Prompt("a", "q")))


# --------------------------------------------------------------------------- CLI


def test_cli_list(cli):
    code, out = cli("list")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "version", "prompts", "categories", "license"]
    assert any(line.split()[:4] == ["drawbench", "1", "200", "11"] for line in out.splitlines())


def test_cli_show(cli):
    code, out = cli("show", "drawbench", "--category", "Colors", "--per-category", "3", "--limit", "2")
    assert code == 0
    assert "sha256:" in out and "subset:   categories=Colors;per_category=3" in out
    assert "prompts:  3 (showing 2)" in out
    assert "drawbench-0000  Colors    A red colored car." in out
    assert "drawbench-0002" not in out


def test_cli_show_errors(cli):
    with pytest.raises(UserError, match="did you mean 'parti'"):
        cli("show", "party")
    with pytest.raises(UserError, match="--limit"):
        cli("show", "parti", "--limit", "0")


def test_cli_validate(cli, write):
    code, out = cli("validate", str(write("p.csv", "prompt,category\na,x\nb,y\nc,x\n")))
    assert (code, out) == (0, "ok: p (user file), 3 prompts, 2 categories\n")
    with pytest.raises(UserError, match="no prompt column"):
        cli("validate", str(write("q.csv", "foo\nbar\n")))


def test_cli_help_has_examples(cli, capsys):
    for argv in (["--help"], ["show", "--help"], ["validate", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli(*argv)
        assert info.value.code == 0
        assert "examples:" in capsys.readouterr().out
