"""The memorization probe: generated images that copy a training image of a CLIP index.

``run`` is the audit (kNN candidates + Carlini et al.'s tiled L2), ``copy_similarity``
its numeric core, ``cli`` its options and report.  ``PROBE`` declares it to
``audit.probes.PROBES``.
"""

from audit.probes.base import ProbeInfo

PROBE = ProbeInfo(
    name="memorization",
    display_name="Memorization (training-data copies)",
    description="find generated images that copy training images of a CLIP index",
    higher_is_better=False,
    headline="copy_rate",
    page="memorization",
    run="audit.probes.memorization.cli:run_probe",
    add_arguments="audit.probes.memorization.cli:add_arguments",
    report="audit.probes.memorization.cli:report",
    report_section="audit.report.sections:memorization_section",
)
