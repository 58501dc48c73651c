"""Text for the pages: Markdown escaping, captions, manifest facts, numbers.

Streamlit renders captions and table cells as Markdown (with LaTeX ``$`` and
``:color[...]`` directives); prompts, captions and manifest values are user
text, so everything run-derived that is shown as Markdown goes through
``escape_markdown``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import pandas as pd

MISSING = "—"  # shown for a value that is absent

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:&^=\"'])")


def escape_markdown(text: Any) -> str:
    """Backslash-escape Markdown/HTML punctuation so user text shows literally.

    Every special character is escaped; newlines become spaces.
    """
    text = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def truncate(text: Any, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def caption_text(row: Any, limit: int = 80) -> str:
    """Plain-text caption for one sample: prompt (truncated), category, guidance, sample."""
    return (
        f"{truncate(row['prompt'], limit)} · {row['category']} · "
        f"g={float(row['guidance']):g} · sample {int(row['sample_index'])}"
    )


def to_number(value: Any) -> float | None:
    """A float, or None for missing/NaN/non-numeric values (e.g. an optional summary field)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def dig(mapping: Any, *keys: str) -> Any:
    """Nested ``mapping[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def show(value: Any) -> str:
    """A manifest value as short text (lists joined, missing as a dash)."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or MISSING
    return str(value)


def format_rate(rate: Any) -> str:
    """A rate 0..1 as a percentage, e.g. ``"33.3 %"``; missing as a dash."""
    number = to_number(rate)
    return MISSING if number is None else f"{100 * number:.1f} %"


def format_value(name: str, value: Any) -> str:
    """A summary number by its key: ``*rate`` as a percentage, other numbers to 4 significant digits."""
    number = to_number(value)
    if number is None:
        return MISSING if value is None or isinstance(value, float) else str(value)
    if str(name).endswith("rate"):
        return format_rate(number)
    return f"{number:.4g}"


def format_thresholds(thresholds: dict) -> str:
    """Thresholds as ``"clip_cosine 0.95, copy_distance 0.1"`` (whatever keys the audit recorded)."""
    parts = [f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in thresholds.items()]
    return ", ".join(parts) or MISSING


def direction(higher_is_better: bool | None) -> str:
    """``"↑ higher is better"``, ``"↓ lower is better"``, or "" when unknown."""
    if higher_is_better is None:
        return ""
    return "↑ higher is better" if higher_is_better else "↓ lower is better"


def manifest_facts(manifest: dict, n_images: int | None) -> list[tuple[str, str]]:
    """The headline (label, value) pairs shown above the image grid."""
    sha = dig(manifest, "prompt_set", "sha256")
    prompt_set = " ".join(
        part
        for part in (
            show(dig(manifest, "prompt_set", "name")),
            f"v{dig(manifest, 'prompt_set', 'version')}" if dig(manifest, "prompt_set", "version") else "",
            f"(sha256 {str(sha)[:12]})" if sha else "",
        )
        if part
    )
    subset = dig(manifest, "prompt_set", "subset")
    if subset:
        prompt_set += f", subset {subset}"
    size = (
        f"{manifest['width']}×{manifest['height']}"
        if manifest.get("width") and manifest.get("height")
        else MISSING
    )
    return [
        ("Model", show(dig(manifest, "model", "ref"))),
        ("Model kind", show(dig(manifest, "model", "kind"))),
        ("Pipeline", show(manifest.get("pipeline_class"))),
        ("Scheduler", show(manifest.get("scheduler"))),
        ("Steps", show(manifest.get("steps"))),
        ("Guidance", show(manifest.get("guidance"))),
        ("Guidance formulation", show(manifest.get("guidance_formulation"))),
        ("Seed", show(manifest.get("seed"))),
        ("Dtype", show(manifest.get("dtype"))),
        ("Device", show(manifest.get("device"))),
        ("Size", size),
        ("Prompt set", prompt_set),
        ("Images", MISSING if n_images is None else str(n_images)),
        ("Created", show(manifest.get("created"))),
    ]


def fact_table(facts: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Facts as a one-column DataFrame indexed by label, Markdown-escaped for ``st.table``."""
    return pd.DataFrame(
        {"Value": [escape_markdown(v) for _, v in facts]},
        index=pd.Index([label for label, _ in facts], name=""),
    )
