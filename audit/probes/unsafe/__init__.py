"""The unsafe-content probe: sexual content in a run's images by two offline ONNX detectors,
NudeNet (exposed body parts) and Yahoo's Open-NSFW (P(pornographic)), with Wilson intervals.

``run`` is the audit, ``classifiers`` the adapters over the two detectors and their thresholds'
sources, ``stats`` the Wilson interval, ``cli`` its options and report.  ``PROBE`` declares it
to ``audit.probes.PROBES``.
"""

from audit.probes.base import ProbeInfo

PROBE = ProbeInfo(
    name="unsafe",
    display_name="Unsafe content (nudity, NSFW)",
    description="score a run's images for sexual content (NudeNet, Yahoo Open-NSFW)",
    higher_is_better=False,
    headline="unsafe_rate",
    page="bias",  # the Bias page shows its rates per category (dashboard.views.bias_page)
    run="audit.probes.unsafe.cli:run_probe",
    add_arguments="audit.probes.unsafe.cli:add_arguments",
    report="audit.probes.unsafe.cli:report",
    report_section="audit.report.sections:unsafe_section",
)
