"""The calibrations by probe name, and writing one's result where the document reads it from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from audit.calibration.config import CalibrationConfig
from audit.calibration.false_copies import calibrate_false_copies, false_copies_markdown
from audit.calibration.memorization import calibrate_memorization, memorization_markdown
from audit.calibration.watermark import calibrate_watermark, watermark_markdown
from bench.atomic import atomic_write_text
from bench.errors import UserError


@dataclass(frozen=True)
class Calibration:
    """One probe's calibration: ``calibrate(config) -> result`` (a JSON-able dict with a ``tag``)
    and ``markdown(result) -> str``, its section of the document."""

    calibrate: Callable[[CalibrationConfig], dict]
    markdown: Callable[[dict], str]


#: Probe name -> its calibration, in the order of the document's sections.
CALIBRATIONS: dict[str, Calibration] = {
    "memorization": Calibration(calibrate_memorization, memorization_markdown),
    "false-copies": Calibration(calibrate_false_copies, false_copies_markdown),
    "watermark": Calibration(calibrate_watermark, watermark_markdown),
}


def result_path(results: Path, probe: str, tag: str) -> Path:
    """``<results>/<probe>-<tag>.json``."""
    return Path(results) / f"{probe}-{tag}.json"


def write_result(results: Path, probe: str, result: dict) -> Path:
    """Write ``result`` as ``<results>/<probe>-<tag>.json`` (atomically); returns the path."""
    path = result_path(results, probe, result["tag"])
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return path


def run_calibration(probe: str, config: CalibrationConfig) -> Path:
    """Calibrate ``probe`` and write its result next to the other probes' (which are kept)."""
    if probe not in CALIBRATIONS:
        raise UserError(f"no calibration for probe {probe!r}; choose from {', '.join(CALIBRATIONS)}")
    return write_result(config.paths.results, probe, CALIBRATIONS[probe].calibrate(config))
