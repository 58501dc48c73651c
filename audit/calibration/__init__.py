"""Calibration of the audit probes on the built-in shapes world, where the right answers are known.

This is where the shipped thresholds come from (``DEFAULT_THRESHOLD_*`` of
``audit.probes.memorization.run``, the watermark probe figures) and how
``docs/audit-calibration.md`` is made; ``scripts/calibrate_audit.py`` is the
command line over it.

* ``config``: ``CalibrationConfig`` (frozen): ``CalibrationPaths`` (runs,
  results, document), ``GeneratorSettings``, ``MemorizationSettings``;
* ``simulate``: generator-like images of scene specs (``simulate_image``) and
  simulated runs;
* ``memorization``: ``calibrate_memorization`` and its pieces (per-image
  table, ``choose_thresholds``, ``verdict_metrics``, ``roc``, candidate
  recall, side ablation) and its section of the document;
* ``watermark``: ``calibrate_watermark`` and its section;
* ``registry``: ``CALIBRATIONS`` by probe name, ``run_calibration`` (calibrate
  and write ``<results>/<probe>-<tag>.json``);
* ``doc``: ``write_doc``, every result JSON present -> the document.

Nothing here keeps state between calls: every path and setting is a parameter.
"""

from audit.calibration.config import (PROMPT_SET, SPLIT_SEEDS, CalibrationConfig, CalibrationPaths,
                                      GeneratorSettings, MemorizationSettings)
from audit.calibration.doc import DOC_HEAD, render_doc, write_doc
from audit.calibration.memorization import (calibrate_memorization, candidate_recall, choose_thresholds,
                                            image_scores, image_table, memorization_markdown, roc, verdict_metrics)
from audit.calibration.registry import CALIBRATIONS, Calibration, result_path, run_calibration, write_result
from audit.calibration.simulate import make_simulated_run, simulate_image
from audit.calibration.watermark import calibrate_watermark, watermark_markdown

__all__ = [
    "PROMPT_SET", "SPLIT_SEEDS", "CalibrationConfig", "CalibrationPaths", "GeneratorSettings", "MemorizationSettings",
    "DOC_HEAD", "render_doc", "write_doc",
    "calibrate_memorization", "candidate_recall", "choose_thresholds", "image_scores", "image_table",
    "memorization_markdown", "roc", "verdict_metrics",
    "CALIBRATIONS", "Calibration", "result_path", "run_calibration", "write_result",
    "make_simulated_run", "simulate_image",
    "calibrate_watermark", "watermark_markdown",
]
