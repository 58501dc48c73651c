"""Audit probes: one sub-package per probe, each declaring a ``ProbeInfo`` (``audit.probes.base``).

``PROBES`` drives ``t2i-audit``, the demo, the report and the dashboard's
audit listing: a new probe is a new module and one entry here, or a plugin
of the ``t2i_audit.probes`` entry point group, with no edit of the core.
"""

from __future__ import annotations

from audit.probes.base import ProbeInfo, load_run_samples
from bench.registry import Registry


def _as_probe(entry) -> ProbeInfo:
    if not isinstance(entry, ProbeInfo):
        raise TypeError(f"an audit probe entry must be an audit.probes.base.ProbeInfo, got {type(entry).__name__}")
    return entry


PROBES: Registry[ProbeInfo] = Registry("audit probe", entry_point_group="t2i_audit.probes", check=_as_probe)
PROBES.add("memorization", "audit.probes.memorization:PROBE")
PROBES.add("watermark", "audit.probes.watermark:PROBE")
PROBES.add("bias", "audit.probes.bias:PROBE")
PROBES.add("unsafe", "audit.probes.unsafe:PROBE")

__all__ = ["PROBES", "ProbeInfo", "load_run_samples"]
