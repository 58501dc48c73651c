"""Tables of the run directory: one writer and one reader for all, with one-line errors."""

import math

import pandas as pd
import pytest

from bench import contract as C


def _samples(n=3):
    return pd.DataFrame({
        "image_id": [f"p{i}__s000__g7.5" for i in range(n)], "prompt_id": [f"p{i}" for i in range(n)],
        "prompt": ["a red circle"] * n, "category": ["colors", None, "counting"][:n], "sample_index": [0] * n,
        "seed": [1] * n, "guidance": [7.5] * n, "cfg_scale": [7.5] * n,
        "path": [f"images/p{i}__s000__g7.5.png" for i in range(n)], "width": [64] * n, "height": [64] * n,
        "truncated": [False] * n, "extra": ["kept"] * n,
    })


def test_write_then_read_gives_the_schema_order_and_kinds(tmp_path):
    df = _samples()[["extra", "prompt", "image_id", "prompt_id", "category", "sample_index", "seed", "guidance",
                     "cfg_scale", "path", "width", "height", "truncated"]]
    C.write_table(tmp_path, C.SAMPLES_TABLE, df)
    back = C.read_table(tmp_path, C.SAMPLES_TABLE)
    assert list(back.columns) == list(C.SAMPLES_TABLE.columns) + ["extra"]
    assert back.sample_index.dtype == "int64" and back.guidance.dtype == float
    assert list(back.category) == ["colors", "", "counting"]  # "str": missing reads as ""


def test_writer_refuses_a_table_without_a_required_column(tmp_path):
    with pytest.raises(C.ContractError, match="lacks column.*prompt_id"):
        C.write_table(tmp_path, C.SAMPLES_TABLE, _samples().drop(columns="prompt_id"))
    assert not (tmp_path / C.SAMPLES).exists()


def test_reader_errors_are_one_line(tmp_path):
    with pytest.raises(C.ContractError, match=r"samples.parquet is missing \(generation has not"):
        C.read_table(tmp_path, C.SAMPLES_TABLE)
    (tmp_path / C.SAMPLES).write_bytes(b"PAR1 truncated")
    with pytest.raises(C.ContractError, match="samples.parquet cannot be read") as err:
        C.read_table(tmp_path, C.SAMPLES_TABLE)
    assert "\n" not in str(err.value)


def test_optional_columns_of_older_writers_are_filled(tmp_path):
    df = pd.DataFrame({"image_id": ["a"], "visible_score": [0.9], "visible": [True]})
    df.to_parquet(tmp_path / "x.parquet")
    (tmp_path / "audit").mkdir()
    df.to_parquet(tmp_path / C.WATERMARK_TABLE.file)
    back = C.read_table(tmp_path, C.WATERMARK_TABLE)
    assert back.invisible.tolist() == [None] and math.isnan(back.neighbour_pwatermark.item())


def test_a_verdict_that_is_not_true_or_false_is_refused(tmp_path):
    rows = pd.DataFrame({"image_id": ["a", "b"], "visible_score": [0.9, 0.1], "visible": [True, None]})
    (tmp_path / "audit").mkdir()
    rows.to_parquet(tmp_path / C.WATERMARK_TABLE.file)
    assert C.read_table(tmp_path, C.WATERMARK_TABLE).visible.tolist() == [True, None]  # "bool?" allows None
    memo = pd.DataFrame({c: [0] for c in C.MEMORIZATION_TABLE.required}).assign(is_copy=[None])
    memo.to_parquet(tmp_path / C.MEMORIZATION_TABLE.file)
    with pytest.raises(C.ContractError, match="is_copy value that is not true/false"):
        C.read_table(tmp_path, C.MEMORIZATION_TABLE)


def test_file_names_are_the_contracts():
    assert C.audit_table_file("bias") == "audit/bias.parquet"
    assert C.audit_table_file("bias", "prompts") == "audit/bias_prompts.parquet"
    assert C.MEMORIZATION_PROMPTS_TABLE.file == C.audit_table_file("memorization", "prompts")
    with pytest.raises(ValueError):
        C.audit_table_file("../x")
