"""summary.json updates from two processes at once keep both writers' keys (the file lock)."""

import json
import subprocess
import sys
import textwrap
import time

from bench import contract as C

WRITER = textwrap.dedent("""
    import pathlib, sys, time
    from bench.contract import update_summary
    run, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pathlib.Path(run, who + ".ready").touch()
    while not pathlib.Path(run, "go").exists():  # start together, so the updates interleave
        time.sleep(0.001)
    for i in range(n):
        update_summary(run, {f"{who}_{i}": i})
""")


def test_two_processes_writing_different_keys_lose_nothing(tmp_path):
    C.update_summary(tmp_path, {"run": "x"})
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, str(n)]) for who in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{w}.ready").exists() for w in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    summary = json.loads((tmp_path / C.SUMMARY).read_text())
    missing = [f"{w}_{i}" for w in "ab" for i in range(n) if f"{w}_{i}" not in summary]
    assert not missing, f"lost updates: {missing[:10]}"
    assert summary["run"] == "x"


def test_record_audit_lists_each_probe(tmp_path):
    info = {"name": "p1", "display_name": "P1", "summary_key": "p1", "headline": "rate", "higher_is_better": False,
            "table": C.audit_table_file("p1"), "page": "audits"}
    C.record_audit(tmp_path, info, {"rate": 0.5})
    C.record_audit(tmp_path, {**info, "name": "p2", "summary_key": "p2"}, {"rate": 0.25})
    summary = C.read_summary(tmp_path)
    assert set(summary[C.AUDITS_KEY]) == {"p1", "p2"} and summary["p2"] == {"rate": 0.25}
