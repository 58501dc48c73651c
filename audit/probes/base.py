"""What an audit probe declares (``ProbeInfo``) and what every probe shares: reading the run.

A probe is a module (or a plugin's module) with a ``PROBE = ProbeInfo(...)``:

* ``name``: the command (``t2i-audit NAME RUN``, ``t2i-audit probe NAME RUN``) and the
  registry key; ``display_name`` and ``description`` for help texts, the dashboard
  and the report;
* ``table``: its per-image table in the run (``bench.contract.audit_table_file(name)``);
  ``summary_key`` and ``headline``: its block of ``summary.json`` and the block's
  headline rate; ``higher_is_better`` says which way that rate is good (a copy rate:
  lower is better);
* ``page``: the url path of the dashboard page that shows it (the generic "Audits" page
  shows every probe's headline and table whatever its page);
* ``run(run_dir, options) -> dict``: the entry point; ``options`` is a dict of the
  probe's settings (its CLI arguments, or what the demo passes); it writes the table
  and returns the summary block, recorded by ``record``;
* ``add_arguments(parser)`` and ``report(args, summary)``: its CLI options (it may also set
  the parser's ``description`` and ``epilog``) and what the command prints (optional: a
  probe without them gets a RUN argument and a one-line report).

* ``report_section(run_dir, summary_block)``: the probe's section of the societal-risk report
  (``audit.report``); optional: without it the report shows the headline, the summary
  block and the start of the table.

``run``, ``add_arguments``, ``report`` and ``report_section`` may be ``"module:function"`` strings, imported
on first use, so listing the probes imports none of them.

Entries of ``audit.probes.PROBES`` are ``"module:PROBE"`` strings or plugins of the
``t2i_audit.probes`` entry point group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from bench import contract as C
from bench import rundir
from bench.errors import UserError
from bench.registry import load_object


@dataclass(frozen=True)
class ProbeInfo:
    name: str
    display_name: str
    description: str
    higher_is_better: bool
    headline: str
    run: Callable[[Path, Mapping[str, Any]], dict] | str
    page: str = "audits"
    add_arguments: Callable[[Any], None] | str | None = None
    report: Callable[[Any, dict], None] | str | None = None
    report_section: Callable[[Path, dict], Any] | str | None = None
    summary_key: str = ""
    table: str = ""

    def __post_init__(self) -> None:
        if not self.summary_key:
            object.__setattr__(self, "summary_key", self.name)
        if not self.table:
            object.__setattr__(self, "table", C.audit_table_file(self.name))

    def declared(self) -> dict:
        """What readers of the run (dashboard, report) need to show this probe, as JSON."""
        return {"name": self.name, "display_name": self.display_name, "description": self.description,
                "higher_is_better": self.higher_is_better, "headline": self.headline, "page": self.page,
                "summary_key": self.summary_key, "table": self.table}

    def entry(self, field_name: str) -> Callable | None:
        """The callable of ``run``, ``add_arguments``, ``report`` or ``report_section``, importing a
        ``"module:function"`` string."""
        value = getattr(self, field_name)
        return load_object(value) if isinstance(value, str) else value

    def record(self, run_dir: str | Path, block: Mapping[str, Any]) -> dict:
        """Write ``block`` to summary.json under this probe's key, listing the probe under "audits"."""
        return C.record_audit(run_dir, self.declared(), block)

    def __call__(self, run_dir: str | Path, options: Mapping[str, Any] | None = None) -> dict:
        """Run the probe on a run directory and record its summary block; returns the block.

        A run the probe cannot write to (read-only mount, no permission) is refused before any work."""
        if C.is_run_dir(run_dir):
            rundir.check_run_writable(run_dir, f"t2i-audit {self.name}")
        block = self.entry("run")(Path(run_dir), dict(options or {}))
        self.record(run_dir, block)
        return block


def load_run_samples(run: Path) -> pd.DataFrame:
    """The run's samples table, or a one-line UserError when there is no run or no image."""
    run = rundir.check_run_dir(run)
    samples = rundir.read_samples(run)
    if samples.empty:
        raise UserError(f"run '{run}' has no images in {C.SAMPLES}; generate or import images first")
    return samples.reset_index(drop=True)
