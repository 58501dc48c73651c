"""The registry type that drives metrics, extractors, probes and pages (bench.registry)."""

import sys
import textwrap

import pytest

from bench.errors import UserError
from bench.registry import Registry


def _plugin_dist(root, group, name, target, dist="toy_plugin"):
    """A minimal installed distribution on sys.path that declares one entry point."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")


def test_duplicates_are_refused_and_names_keep_their_order():
    reg = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)
    assert reg.names() == ["b", "a"] and reg.get("a") == 1


def test_unknown_names_get_a_suggestion():
    reg = Registry("audit probe")
    reg.add("memorization", 1)
    with pytest.raises(UserError, match="unknown audit probe 'memorisation'; did you mean 'memorization'"):
        reg.get("memorisation")
    with pytest.raises(UserError) as err:
        reg.get("zzz")
    assert "did you mean" not in str(err.value) and "known: memorization" in str(err.value)


def test_lazy_entries_are_imported_on_first_get(tmp_path, monkeypatch):
    (tmp_path / "lazy_target_mod.py").write_text("LOADED = True\nVALUE = {'x': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing")
    reg.add("v", "lazy_target_mod:VALUE")
    assert "lazy_target_mod" not in sys.modules and reg.names() == ["v"]
    assert reg.get("v") == {"x": 1} and "lazy_target_mod" in sys.modules


def test_entry_point_plugins_join_and_cannot_take_a_builtin_name(tmp_path, monkeypatch, caplog):
    (tmp_path / "toy_widgets.py").write_text(textwrap.dedent("""
        NEW = "from a plugin"
        CLASH = "should never be seen"
    """))
    _plugin_dist(tmp_path, "t2i_audit.test_widgets", "new", "toy_widgets:NEW", "toy_a")
    _plugin_dist(tmp_path, "t2i_audit.test_widgets", "builtin", "toy_widgets:CLASH", "toy_b")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", entry_point_group="t2i_audit.test_widgets")
    reg.add("builtin", ["mine"])
    assert reg.names() == ["builtin", "new"]
    assert reg.get("new") == "from a plugin" and reg.get("builtin") == ["mine"]
    assert "plugin" in reg.origin("new") and reg.origin("builtin") == "built-in"
    assert any("refused" in r.message and "toy_widgets:CLASH" in r.message for r in caplog.records)


def test_a_broken_plugin_is_one_line(tmp_path, monkeypatch):
    _plugin_dist(tmp_path, "t2i_audit.test_broken", "bad", "no_such_module_anywhere:X")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", entry_point_group="t2i_audit.test_broken")
    with pytest.raises(UserError, match="widget 'bad' .*cannot be loaded: ModuleNotFoundError"):
        reg.get("bad")


def test_the_registries_drive_the_commands():
    from audit.probes import PROBES
    from bench.features import EXTRACTORS
    from bench.metrics import METRICS, Metric

    assert {"memorization", "watermark"} <= set(PROBES.names())
    assert {"inception", "clip", "efficientnet-lite0", "dinov2"} <= set(EXTRACTORS.names())
    assert all(isinstance(METRICS.get(n), Metric) for n in METRICS.names())
    with pytest.raises(UserError, match="did you mean 'efficientnet-lite0'"):
        from bench.features import get_extractor

        get_extractor("efficientnet-lite")
