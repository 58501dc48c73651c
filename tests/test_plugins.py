"""A toy audit probe and its dashboard page, added by entry points alone: no core file is edited.

The plugin is a temporary distribution (``toy_audit-0.1.dist-info`` with an
``entry_points.txt``) on PYTHONPATH, exactly what ``pip install`` of a package
declaring ``[project.entry-points."t2i_audit.probes"]`` leaves behind.  The CLI,
summary.json, the demo's probe loop and the dashboard's page list must all see it.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench import contract as C
from bench.generate import generate
from bench.runspec import RunSpec

TOY = textwrap.dedent('''
    """A toy probe: the share of images brighter than --level (mean grey value)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from audit.probes.base import ProbeInfo, load_run_samples
    from bench import contract as C

    TABLE = C.audit_table("toy", {"image_id": "str", "category": "str", "brightness": "float", "bright": "bool"})


    def run(run_dir, options):
        samples = load_run_samples(run_dir)
        level = float(options.get("level", 128.0))
        brightness = [float(np.asarray(Image.open(run_dir / p).convert("L")).mean()) for p in samples.path]
        table = pd.DataFrame({"image_id": samples.image_id, "category": samples.category,
                              "brightness": brightness, "bright": [b > level for b in brightness]})
        C.write_table(run_dir, TABLE, table)
        return {"n_images": len(table), "bright_rate": float(table.bright.mean()), "level": level}


    def add_arguments(parser):
        parser.add_argument("--level", type=float, default=128.0, help="grey level above which an image is bright")


    PROBE = ProbeInfo(name="toy", display_name="Toy brightness", description="share of bright images",
                      higher_is_better=False, headline="bright_rate", run=run, add_arguments=add_arguments,
                      page="toy")


    def render(root):
        import streamlit as st

        st.title("Toy brightness")


    def page():
        from dashboard.pages import PageInfo

        return PageInfo(title="Toy", icon=":material/lightbulb:", url_path="toy", render="toy_audit:render",
                        order=90)
''')


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "toy_audit.py").write_text(TOY)
    info = root / "toy_audit-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-audit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[t2i_audit.probes]\ntoy = toy_audit:PROBE\n\n"
                                          "[t2i_audit.pages]\ntoy = toy_audit:page\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return root, env


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy-run") / "run"
    generate(RunSpec(out=str(out), model="builtin:tiny-random", prompts="shapes", per_category=1, steps=2,
                     guidance=(3.0,), batch_size=16), progress=False)
    return out


def _run(env, *args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_lists_and_runs_the_plugin_probe(plugin_env, run_dir):
    _, env = plugin_env
    listed = _run(env, "-m", "audit.cli", "probes")
    assert listed.returncode == 0, listed.stderr
    assert "toy" in listed.stdout and "plugin toy_audit:PROBE" in listed.stdout
    assert "memorization" in listed.stdout and "watermark" in listed.stdout

    done = _run(env, "-m", "audit.cli", "toy", str(run_dir), "--level", "0")
    assert done.returncode == 0, done.stderr
    assert "Toy brightness: bright_rate 1.0" in done.stdout
    summary = C.read_summary(run_dir)
    assert summary["toy"]["n_images"] == len(C.read_table(run_dir, C.SAMPLES_TABLE))
    assert summary["audits"]["toy"]["table"] == "audit/toy.parquet"
    assert summary["audits"]["toy"]["higher_is_better"] is False
    table = C.read_table(run_dir, C.audit_table("toy", {"image_id": "str", "bright": "bool"}))
    assert table.bright.all()

    again = _run(env, "-m", "audit.cli", "probe", "toy", str(run_dir), "--level", "255")
    assert again.returncode == 0, again.stderr
    assert C.read_summary(run_dir)["toy"]["bright_rate"] == 0.0

    unknown = _run(env, "-m", "audit.cli", "probe", "toy", str(run_dir), "--levle", "3")
    assert unknown.returncode == 2


DASHBOARD_CHECK = textwrap.dedent("""
    import json, sys
    from dashboard.data.audits import list_audits
    from dashboard.data.reading import load_summary
    from dashboard.pages import load_pages
    pages, problems = load_pages()
    audits, _ = list_audits(load_summary(sys.argv[1])[0])
    print(json.dumps({"pages": [p.url_path for p in pages], "problems": problems,
                      "audits": [a.name for a in audits]}))
""")


def test_dashboard_lists_the_plugin_page_and_its_audit(plugin_env, run_dir):
    _, env = plugin_env
    assert _run(env, "-m", "audit.cli", "toy", str(run_dir)).returncode == 0
    shown = _run(env, "-c", DASHBOARD_CHECK, str(run_dir))
    assert shown.returncode == 0, shown.stderr
    seen = json.loads(shown.stdout)
    assert seen["problems"] == []
    assert {"overview", "runs", "metrics", "compare", "memorization", "audits"} <= set(seen["pages"]) and "toy" in seen["pages"]
    assert "toy" in seen["audits"]


def test_without_the_plugin_the_probe_is_unknown(run_dir):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = _run(env, "-m", "audit.cli", "probes")
    assert listed.returncode == 0 and "toy" not in listed.stdout
