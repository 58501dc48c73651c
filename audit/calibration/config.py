"""What a calibration reads and writes: one frozen ``CalibrationConfig``.

``CalibrationPaths`` says where the runs and indexes go (``out``), where the
per-probe result JSON files are (``results``) and which document they are
turned into (``doc``; the ROC plots are written next to it).  ``root`` is the
folder that paths in the results and the document are shown relative to (the
repository for the committed results), so the committed JSON files carry no
machine-specific paths.  ``GeneratorSettings`` says what makes the images
(a model, or the simulation of ``audit.calibration.simulate``) and
``MemorizationSettings`` which index the memorization audit runs against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError

#: The prompt set every calibration draws its prompts from: ``iconic`` (the 24
#: memorized "the famous ... poster" captions) and ``fresh`` (48 new scenes) for
#: memorization, ``stock_cue`` and ``no_cue`` for the watermark reproduction.
PROMPT_SET = "shapes-audit"
#: Run seeds of the two splits: thresholds are fit on "calibration" and
#: reported on "evaluation", so the figures are not fit on themselves.
SPLIT_SEEDS = {"calibration": 1, "evaluation": 2}


@dataclass(frozen=True)
class CalibrationPaths:
    out: Path            # runs and indexes (build/calibration in the repository)
    doc: Path            # the document (docs/audit-calibration.md); ROC plots go next to it
    results: Path        # one <probe>-<tag>.json per calibration (docs/audit-calibration/)
    root: Path | None = None  # paths inside it are shown relative to it in results and document

    @classmethod
    def under(cls, root: str | Path) -> CalibrationPaths:
        """The repository layout: ``build/calibration``, ``docs/audit-calibration.md``, ``docs/audit-calibration/``."""
        root = Path(root)
        return cls(out=root / "build" / "calibration", doc=root / "docs" / "audit-calibration.md",
                   results=root / "docs" / "audit-calibration", root=root)

    @property
    def plots(self) -> Path:
        """Where the ROC plots go: next to the document, which links them by file name."""
        return self.doc.parent

    def shown(self, path: str | Path) -> str:
        """A path as the results and the document show it: relative to ``root`` when inside it."""
        path = Path(path).resolve()
        if self.root is not None:
            root = Path(self.root).resolve()
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return str(path)


@dataclass(frozen=True)
class GeneratorSettings:
    """What makes the audited images: ``model`` with ``samples`` per prompt and split, or the simulation."""

    model: str = "builtin:shapes-ldm"
    simulate: bool = False
    samples: int = 8
    steps: int = 20
    guidance: float = 7.5
    batch_size: int = 16

    def __post_init__(self):
        for name in ("samples", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class MemorizationSettings:
    """The index of the memorization audit: ``index`` (a folder) if given, else one built from
    ``index_source`` under ``CalibrationPaths.out``; ``k`` CLIP candidates per image (None: the audit's)."""

    index: Path | None = None
    index_source: str = "shapes-laion:2000"
    k: int | None = None

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise UserError(f"k must be at least 1, got {self.k}")

    @property
    def resolved_k(self) -> int:
        from audit.probes.memorization.run import DEFAULT_K

        return DEFAULT_K if self.k is None else self.k


@dataclass(frozen=True)
class CalibrationConfig:
    paths: CalibrationPaths
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    memorization: MemorizationSettings = field(default_factory=MemorizationSettings)
    progress: bool = True
