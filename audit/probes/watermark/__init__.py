"""The watermark probe: visible marks (a probe head on image features), the neighbours' pwatermark,
and the invisible dwtDct marks of Stable Diffusion releases.

``run`` is the audit, ``classifier`` the visible-watermark probe head and its training,
``overlays`` the synthetic marks it trains on, ``invisible`` the dwtDct decoder, ``cli``
its options and report.  ``PROBE`` declares it to ``audit.probes.PROBES``.
"""

from audit.probes.base import ProbeInfo

PROBE = ProbeInfo(
    name="watermark",
    display_name="Watermarks (visible and invisible)",
    description="score a run's images for visible and invisible watermarks",
    higher_is_better=False,
    headline="visible_rate",
    page="runs",
    run="audit.probes.watermark.cli:run_probe",
    add_arguments="audit.probes.watermark.cli:add_arguments",
    report="audit.probes.watermark.cli:report",
    report_section="audit.report.sections:watermark_section",
)
