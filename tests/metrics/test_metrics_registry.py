"""The metric registry the dashboard reads."""

from __future__ import annotations

import importlib
import json

import pytest

from bench.metrics import REGISTRY, MetricInfo, metric_info

MODULES = ("fid", "kid", "inception_score", "clip_score", "cmmd", "precision_recall", "compositional")


def test_registry_lists_every_metric_with_metadata():
    assert set(REGISTRY) == {"fid", "kid", "is", "clip_score", "cmmd", "precision", "recall", "compositional_accuracy"}
    for name, info in REGISTRY.items():
        assert isinstance(info, MetricInfo) and info.name == name
        assert info.display_name and info.paper and info.formula and info.inputs
        json.dumps(info.to_dict())  # plain data
    assert REGISTRY["fid"].higher_is_better is False and REGISTRY["clip_score"].higher_is_better is True


@pytest.mark.parametrize("module", MODULES)
def test_each_module_documents_formula_and_paper(module):
    mod = importlib.import_module(f"bench.metrics.{module}")
    assert any(hasattr(mod, attr) for attr in ("METRIC", "METRICS"))
    doc = mod.__doc__
    assert doc and any(str(year) in doc for year in range(2016, 2025))


def test_metric_info_accepts_reported_names():
    assert metric_info("FID") is REGISTRY["fid"]
    assert metric_info("FD_dinov2-vitl14") is REGISTRY["fid"]
    assert metric_info("KID_efficientnet-lite0") is REGISTRY["kid"]
    assert metric_info("CLIPScore") is REGISTRY["clip_score"]
    with pytest.raises(KeyError):
        metric_info("bleu")
