"""The bias probe: who (or what) a model draws for a neutral prompt, with intervals.

Perceived gender presentation, age group and skin tone of real images (CLIP
zero-shot with prompt ensembles; MTCNN faces and ITA°/Monk skin tone), and in
the built-in world each role's planted attribute, read by the evaluator CLIP and
by the exact detector (the probe's calibration).  Per prompt, per category and
overall: class shares with 95% intervals (Wilson per prompt, a seeded bootstrap
over prompts for aggregates), HEIM's imbalance, DALL-Eval's MAD, the normalised
entropy (OpenBias' intensity is 1 minus it) and the difference from a reference
share (BLS female share; the corpus share, i.e. amplification).

``stats`` is the numeric core, ``attributes`` the readers, ``run`` the audit,
``cli`` its options and report, ``prompts`` the professions prompt set in the
HEIM/DALL-Eval or Stable Bias template.  ``PROBE`` declares it to ``audit.probes.PROBES``.
"""

from audit.probes.base import ProbeInfo

PROBE = ProbeInfo(
    name="bias",
    display_name="Social bias (gender, age, skin tone; built-in roles)",
    description="measure the attribute shares a run's prompts produce, with intervals and reference shares",
    higher_is_better=False,
    headline="imbalance",
    page="bias",
    run="audit.probes.bias.cli:run_probe",
    add_arguments="audit.probes.bias.cli:add_arguments",
    report="audit.probes.bias.cli:report",
    report_section="audit.report.sections:bias_section",  # the report reads the tables, not this package
)
