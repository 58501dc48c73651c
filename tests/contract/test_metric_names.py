"""The metric-naming rule of bench.contract: every per-extractor metric carries its extractor."""

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from bench.contract import (FEATURE_METRIC_BASES, INCEPTION_NAME, feature_metric_name, parse_metric_name,
                            upgrade_metric_names)

KEY = "efficientnet-lite0__w0123456789abcdef__bilinear-224__float32"


def test_names_follow_the_rule():
    assert feature_metric_name("FD", f"{INCEPTION_NAME}__wabc__clean__float32") == "FID"
    assert feature_metric_name("KID", INCEPTION_NAME) == "KID"
    assert feature_metric_name("precision", INCEPTION_NAME) == f"precision_{INCEPTION_NAME}"
    assert feature_metric_name("FD", KEY) == "FD_efficientnet-lite0"
    assert feature_metric_name("recall", KEY) == "recall_efficientnet-lite0"
    assert feature_metric_name("precision", None) == "precision"
    with pytest.raises(ValueError):
        feature_metric_name("CLIPScore", KEY)


@given(base=st.sampled_from(FEATURE_METRIC_BASES),
       name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,20}(_[A-Za-z0-9.+-]{1,8})?", fullmatch=True))
def test_parse_inverts_the_rule(base, name):
    reported = feature_metric_name(base, f"{name}__wabc__x__float32")
    assert parse_metric_name(reported) == (base, name)


def test_plain_metrics_parse_to_themselves():
    for name in ("CLIPScore", "CMMD", "IS", "compositional_accuracy"):
        assert parse_metric_name(name) == (name, None)


def test_old_runs_get_the_new_names():
    old = pd.DataFrame({"metric": ["precision", "recall", "precision", "FD_efficientnet-lite0", "precision"],
                        "extractor": [KEY, KEY, f"{INCEPTION_NAME}__wabc__clean__float32", KEY, None],
                        "value": [0.1, 0.2, 0.3, 4.0, 0.5]})
    new = upgrade_metric_names(old)
    assert list(new.metric) == ["precision_efficientnet-lite0", "recall_efficientnet-lite0",
                                f"precision_{INCEPTION_NAME}", "FD_efficientnet-lite0", "precision"]
    assert list(old.metric)[0] == "precision"  # the input is not changed
    assert upgrade_metric_names(new).equals(new)
