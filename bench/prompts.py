"""Prompt sets: a registry of small declarative files, plus loaders for user files.

A prompt set is a named, versioned, hash-pinned list of prompts.  Runs record
``name``, ``version``, ``sha256`` and ``selection`` in their manifest, so a result
can always be traced back to the exact prompts that made it.

Shipped sets (the registry)
---------------------------
Every ``prompt_sets/<file>.yaml`` defines one set; the registry maps each set's
``name`` to its yaml file and refuses two files with the same name.  The yaml
(read with ``yaml.safe_load``) has these keys::

    name: drawbench                 # required; [A-Za-z0-9._-], used in artifact names
    version: "1"                    # required; a string or an integer (quote "1.10")
    description: ...                # optional text
    source: "repo, path, commit"    # where the data came from
    license: "..."                  # the data's licence
    data: data/DrawBench_Prompts.csv  # the data file, relative to the yaml
    sha256: <hex>                   # sha256 of the data file's bytes, checked on load
    format: csv                     # csv | tsv | jsonl | txt (default: data's extension)
    columns: {prompt: Prompts, category: Category}  # our field -> file column
    extra_columns: [Challenge, Note]  # file columns copied into Prompt.extra
    id_column: id                   # optional column of prompt ids
    spec_field: spec                # optional (jsonl): key whose object is Prompt.spec
    spec_fields: [include, exclude] # or: Prompt.spec = {key: row[key]} for these keys

``columns`` is optional: without it the user-file rules below pick the columns
(and every other column goes to ``extra``).  With it, only ``extra_columns``
are kept.  Use ``spec_field`` or ``spec_fields``, not both.

Instead of ``data``, a yaml may hold the rows inline (handy for user files)::

    name: my-set
    version: "1"
    prompts:
      - a red cube                     # a bare string is a prompt
      - {id: p1, prompt: two blue balls, category: counting, spec: {...}}

Inline rows follow the user-file rules.  Their ``sha256`` is that of the rows'
canonical JSON (sorted keys, no spaces), so reformatting the yaml keeps it; an
optional ``sha256:`` key pins it.

User files
----------
``load_prompt_set(path)`` also reads ``.txt`` (one prompt per line, blank lines
skipped), ``.csv``, ``.tsv`` and ``.jsonl``.  The prompt column is the first of
``prompt``, ``prompts``, ``text``, ``caption`` (any case); ``category`` and
``id`` are optional; in jsonl a ``spec`` object becomes ``Prompt.spec``; all
other columns go to ``Prompt.extra``.  The set's name is the file stem, its
version ``"file"``, its sha256 that of the file's bytes.

Rules common to every format
----------------------------
- Files must be UTF-8 (a leading BOM is allowed) with no NUL byte (a binary or
  UTF-16 file is refused with the line of its first NUL).
- Prompt text is kept exactly as stored (PartiPrompts has a few prompts with
  stray spaces; changing them would change the benchmark); category labels
  are stripped ("Gary Marcus et al. " -> "Gary Marcus et al.").
- Ids are ``<name>-<row>`` (0-based row among the prompts, 4 digits; the name
  cut to 100 characters) unless the file gives them; ids match ``[A-Za-z0-9_-][A-Za-z0-9._-]*`` (at most 128
  characters) so they are safe in file names, and are unique within a set.
- TSV has no quoting: a tab separates fields and quotes are text.  (Read with
  CSV quoting, PartiPrompts' ``"G I G G L E" painted ...`` loses its quotes.)
  CSV uses standard quoting.

Every problem a user can fix raises ``UserError`` with a one-line message.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import yaml

import prompt_sets
from bench.errors import UserError

ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
NAME_RE = ID_RE
PROMPT_ALIASES = ("prompt", "prompts", "text", "caption")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "txt"}
YAML_SUFFIXES = (".yaml", ".yml")
USER_SUFFIXES = (*YAML_SUFFIXES, *FORMATS)

_META_KEYS = {"name", "version", "description", "source", "license", "sha256"}
_DATA_KEYS = {"data", "format", "columns", "extra_columns", "id_column", "spec_field", "spec_fields"}
_YAML_KEYS = _META_KEYS | _DATA_KEYS | {"prompts"}

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- data model


def _freeze(value: Any) -> Any:
    """Deep read-only copy: dicts -> MappingProxyType, lists -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Plain JSON-serialisable copy of a frozen value."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Prompt:
    """One prompt.  ``extra`` and ``spec`` are deep read-only (see ``to_dict``)."""

    id: str
    prompt: str
    category: str = ""
    # Excluded from the hash (mappings are unhashable); still compared by ==.
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    spec: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "extra", _freeze(self.extra or {}))
        if self.spec is not None:
            object.__setattr__(self, "spec", _freeze(self.spec))

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, ready for json.dumps or a parquet row."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "category": self.category,
            "extra": _thaw(self.extra),
            "spec": None if self.spec is None else _thaw(self.spec),
        }


@dataclass(frozen=True)
class PromptSet:
    """A named, versioned, hash-pinned tuple of prompts (possibly a subset)."""

    name: str
    version: str
    description: str
    source: str
    license: str
    sha256: str
    prompts: tuple[Prompt, ...]
    path: str | None = None
    # How subset() narrowed the set: "" for the whole set, else e.g.
    # "categories=Colors,Counting;per_category=2".  (Not called "subset": that is the method.)
    selection: str = ""

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(self.prompts))
        dupes = [i for i, n in Counter(p.id for p in self.prompts).items() if n > 1]
        if dupes:
            raise ValueError(f"prompt set {self.name!r} has duplicate ids: {dupes[:5]}")

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def categories(self) -> list[str]:
        """Distinct non-empty categories, in first-seen order."""
        return [c for c in dict.fromkeys(p.category for p in self.prompts) if c]

    def subset(self, categories: Sequence[str] | None = None, per_category: int | None = None) -> PromptSet:
        """Keep only ``categories`` (case-insensitive; None or empty: all) and then
        the first ``per_category`` prompts of each category, in file order.

        Uncategorised prompts form one group for ``per_category``.  The result
        keeps name, version and sha256 and records the selection in ``selection``.
        """
        prompts = self.prompts
        parts = []
        if categories:
            known = self.categories()
            by_lower = {c.lower(): c for c in known}
            wanted = []
            for c in categories:
                match = c if c in known else by_lower.get(c.strip().lower())
                if match is None:
                    raise UserError(
                        f"prompt set '{self.name}' has no category '{c}'; valid categories: {', '.join(known) or '(none)'}"
                    )
                wanted.append(match)
            wanted = list(dict.fromkeys(wanted))
            prompts = tuple(p for p in prompts if p.category in set(wanted))
            parts.append("categories=" + ",".join(wanted))
        if per_category is not None:
            if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 1:
                raise UserError(f"per-category count must be a whole number >= 1 (got {per_category!r})")
            seen: Counter[str] = Counter()
            kept = []
            for p in prompts:
                if seen[p.category] < per_category:
                    seen[p.category] += 1
                    kept.append(p)
            prompts = tuple(kept)
            parts.append(f"per_category={per_category}")
        if not parts:
            return self
        return replace(self, prompts=prompts, selection=";".join(s for s in (self.selection, *parts) if s))


# --------------------------------------------------------------------------- registry


def registry() -> dict[str, Path]:
    """Shipped set name -> its yaml file.  Two files with one name -> UserError."""
    found: dict[str, Path] = {}
    folder = Path(prompt_sets.PROMPT_SETS_DIR)
    for path in sorted(p for suffix in YAML_SUFFIXES for p in folder.glob("*" + suffix)):
        name = _read_yaml(path).get("name")
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: no 'name:' key; every prompt-set yaml needs a name")
        if name in found:
            raise UserError(
                f"prompt set name '{name}' is defined twice, in {found[name].name} and {path.name}; rename one of them"
            )
        found[name] = path
    return found


def list_prompt_sets() -> list[PromptSet]:
    """Load every shipped set, sorted by name (verifies every hash)."""
    return [_load_yaml_set(path) for _, path in sorted(registry().items())]


def load_prompt_set(name_or_path: str | Path) -> PromptSet:
    """Load a registered set by name, or a user file by path.

    A registered name wins over a file of the same name in the working folder.
    """
    text = str(name_or_path)
    sets = registry()
    if text in sets:
        return _load_yaml_set(sets[text])
    path = Path(text).expanduser()
    if path.is_file():
        return validate_file(path)
    if path.exists():
        raise UserError(f"'{text}' is a folder, not a prompt file; give a .yaml, .txt, .csv, .tsv or .jsonl file")
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.startswith(("~", ".")) or path.suffix.lower() in USER_SUFFIXES
    if looks_like_path:
        raise UserError(f"prompt file '{text}' does not exist; check the path (registered set names: t2i-bench prompts list)")
    close = difflib.get_close_matches(text.lower(), list(sets), n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    else:
        hint = "known sets: " + ", ".join(sorted(sets))
    raise UserError(f"unknown prompt set '{text}'; {hint} (t2i-bench prompts list shows all)")


def validate_file(path: str | Path) -> PromptSet:
    """Parse and check a prompt file (yaml set or user file); runs nothing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"prompt file '{path}' does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return _load_yaml_set(path)
    if suffix not in FORMATS:
        raise UserError(f"{path}: unsupported file type '{suffix or '(none)'}'; use one of {', '.join(USER_SUFFIXES)}")
    data = path.read_bytes()
    prompts = _parse_data(path, data, FORMATS[suffix], _Layout(), _id_prefix(path.stem))
    return PromptSet(
        name=path.stem,
        version="file",
        description=f"user prompt file {path.name}",
        source=str(path),
        license="",
        sha256=hashlib.sha256(data).hexdigest(),
        prompts=prompts,
        path=str(path),
    )


# --------------------------------------------------------------------------- yaml sets


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(_decode(path, path.read_bytes()))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a YAML mapping with name, version and data or prompts")
    return doc


def _load_yaml_set(path: Path) -> PromptSet:
    doc = _read_yaml(path)
    unknown = sorted(set(doc) - _YAML_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_YAML_KEYS))}")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"{path}: name {name!r} must be a string of letters, digits, '.', '_' or '-'")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, (str, int)) or version == "":
        hint = f' (quote it: version: "{version}")' if isinstance(version, float) else ""
        raise UserError(f"{path}: version must be a string or an integer, got {version!r}{hint}")
    meta = {}
    for key in ("description", "source", "license"):
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise UserError(f"{path}: '{key}' must be a string")
        meta[key] = value.strip()

    if ("data" in doc) == ("prompts" in doc):
        raise UserError(f"{path}: give exactly one of 'data:' (a data file) or 'prompts:' (inline rows)")
    if "prompts" in doc:
        misplaced = sorted(_DATA_KEYS & set(doc))
        if misplaced:
            raise UserError(f"{path}: {', '.join(misplaced)} only apply with 'data:'; remove them for inline prompts")
        prompts, sha = _inline_prompts(path, doc, name)
    else:
        prompts, sha = _data_prompts(path, doc, name)
    return PromptSet(name=name, version=str(version), sha256=sha, prompts=prompts, path=str(path), **meta)


def _data_prompts(path: Path, doc: dict, name: str) -> tuple[tuple[Prompt, ...], str]:
    """Prompts and sha256 of a yaml set whose rows live in a ``data:`` file."""
    rel = doc["data"]
    if not isinstance(rel, str) or not rel:
        raise UserError(f"{path}: 'data' must be a file path relative to the yaml")
    data_path = path.parent / rel
    if not data_path.is_file():
        raise UserError(f"prompt set '{name}' ({path.name}): data file {rel} not found next to the yaml")
    data = data_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if not doc.get("sha256"):
        raise UserError(f"prompt set '{name}' ({path.name}) does not pin its data; add the line: sha256: {sha}")
    # Checked before parsing, so a changed file is reported as changed, not as malformed.
    _check_sha(path, name, f"data file {rel}", doc["sha256"], sha)

    fmt = doc.get("format") or FORMATS.get(data_path.suffix.lower())
    if fmt not in FORMATS.values():
        raise UserError(f"{path}: unknown data format {fmt!r}; set 'format:' to one of {', '.join(FORMATS.values())}")
    if fmt != "jsonl" and ("spec_field" in doc or "spec_fields" in doc):
        raise UserError(f"{path}: spec_field/spec_fields need jsonl data (CSV cells cannot hold a spec object)")
    layout = _Layout()
    if "columns" in doc:
        columns = doc["columns"]
        if not isinstance(columns, dict) or "prompt" not in columns or set(columns) - {"prompt", "category"}:
            raise UserError(f"{path}: 'columns' must map prompt (required) and category (optional) to file columns")
        extra = doc.get("extra_columns") or []
        if not isinstance(extra, list) or not all(isinstance(c, str) for c in extra):
            raise UserError(f"{path}: 'extra_columns' must be a list of column names")
        layout = _Layout(explicit=True, prompt=columns["prompt"], category=columns.get("category"), extra=tuple(extra))
    elif "extra_columns" in doc:
        raise UserError(f"{path}: 'extra_columns' needs 'columns:' (without it every other column is kept)")
    if "spec_field" in doc and "spec_fields" in doc:
        raise UserError(f"{path}: use 'spec_field' (one key holding the spec) or 'spec_fields' (keys to collect), not both")
    spec_fields = doc.get("spec_fields")
    if spec_fields is not None and (not isinstance(spec_fields, list) or not spec_fields):
        raise UserError(f"{path}: 'spec_fields' must be a non-empty list of keys")
    layout = replace(
        layout,
        id=doc.get("id_column"),
        spec_field=doc.get("spec_field", None if layout.explicit else "spec"),
        spec_fields=tuple(spec_fields or ()),
    )
    return _parse_data(data_path, data, fmt, layout, _id_prefix(name)), sha


def _check_sha(path: Path, name: str, what: str, expected: Any, actual: str) -> None:
    if str(expected).strip().lower() != actual:
        raise UserError(
            f"prompt set '{name}' ({path.name}): sha256 mismatch for {what}: expected {expected}, actual {actual}; "
            "restore the data, or if the change is intended update sha256 and version in the yaml"
        )


def _inline_prompts(path: Path, doc: dict, name: str) -> tuple[tuple[Prompt, ...], str]:
    """Prompts and sha256 (of the rows' canonical JSON) of a yaml with ``prompts:``."""
    rows = doc["prompts"]
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: 'prompts' must be a non-empty list of strings or mappings")
    located = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise UserError(f"{path}: prompts[{i}] must be a string or a mapping with a 'prompt' key")
        if not all(isinstance(k, str) for k in row):
            raise UserError(f"{path}: prompts[{i}] has a non-text key; keys are column names such as prompt, id, category")
        located.append((f"prompts[{i}]", row))
    try:
        canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    except TypeError as e:  # e.g. non-string keys that json cannot sort
        raise UserError(f"{path}: inline prompts must be plain strings, numbers, lists and mappings ({e})") from None
    sha = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    if doc.get("sha256"):
        _check_sha(path, name, "inline prompts", doc["sha256"], sha)
    layout = _Layout().resolve(path, list(dict.fromkeys(k for _, row in located for k in row)))
    return _build_prompts(path, located, layout, _id_prefix(name)), sha


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Layout:
    """Which columns hold what.  ``explicit=False``: detect them by name."""

    explicit: bool = False
    prompt: str | None = None
    category: str | None = None
    id: str | None = None
    extra: tuple[str, ...] = ()
    spec_field: str | None = "spec"
    spec_fields: tuple[str, ...] = ()

    def resolve(self, where: Path, columns: list[str]) -> _Layout:
        """Fill in the columns from ``columns`` (the header, or all jsonl keys)."""
        if self.explicit:
            wanted = [self.prompt, self.category, self.id, *self.extra]
            missing = [c for c in wanted if c is not None and c not in columns]
            if missing:
                raise UserError(
                    f"{where}: column(s) {', '.join(map(repr, missing))} not found; columns found: {', '.join(columns)}"
                )
            return self
        lower = {str(c).lower(): c for c in reversed(columns)}  # first of equal names wins
        prompt = next((lower[a] for a in PROMPT_ALIASES if a in lower), None)
        if prompt is None:
            raise UserError(
                f"{where}: no prompt column; name one of {', '.join(PROMPT_ALIASES)} (columns found: {', '.join(columns) or 'none'})"
            )
        if self.id and self.id not in columns:
            raise UserError(f"{where}: id column '{self.id}' not found; columns found: {', '.join(columns)}")
        category = lower.get("category")
        id_col = self.id or lower.get("id")
        spec_field = lower.get(self.spec_field.lower()) if self.spec_field else None
        used = {prompt, category, id_col, spec_field, *self.spec_fields}
        extra = tuple(c for c in columns if c not in used)
        return replace(self, prompt=prompt, category=category, id=id_col, extra=extra, spec_field=spec_field)


#: Longest prefix of a default id: "<prefix>-<row>" must stay within ID_RE's 128 characters
#: (a 245-character file name once made ids, and image file names, too long for the file system).
ID_PREFIX_MAX = 100


def _id_prefix(name: str) -> str:
    """Set name made filesystem-safe (and at most ``ID_PREFIX_MAX`` characters), for the default ids."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:ID_PREFIX_MAX] or "prompt"


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text (BOM dropped), or a UserError that says where the bad byte is."""
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        text = data[3:].decode("utf-8") if bom else data.decode("utf-8")
    except UnicodeDecodeError as e:
        offset = e.start + (3 if bom else 0)
        line = data[:offset].count(b"\n") + 1
        raise UserError(
            f"{path}: not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}, line {line}); re-save the file as UTF-8"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:  # valid UTF-8, but no prompt holds a NUL: a binary or UTF-16 file, which the encoder must not see
        line = text.count("\n", 0, nul) + 1
        raise UserError(
            f"{path}: line {line} holds a NUL byte (\\x00): a binary or UTF-16 file? remove it or re-save the file as UTF-8 text"
        )
    return text


def _parse_data(path: Path, data: bytes, fmt: str, layout: _Layout, id_prefix: str) -> tuple[Prompt, ...]:
    """Rows of a csv/tsv/jsonl/txt file -> prompts."""
    text = _decode(path, data)
    if not text.strip():
        raise UserError(f"{path}: the file is empty; add prompts (one per line, or rows under a header)")
    if fmt == "txt":
        lines = text.split("\n")
        rows = [(f"line {n}", {"prompt": s.rstrip("\r")}) for n, s in enumerate(lines, 1) if s.strip()]
        layout = _Layout(prompt="prompt", explicit=True, spec_field=None)
    elif fmt == "jsonl":
        rows = _jsonl_rows(path, text)
        columns = list(dict.fromkeys(k for _, row in rows for k in row))
        layout = layout.resolve(path, columns)
    else:
        columns, rows = _delimited_rows(path, text, fmt)
        # CSV cells are strings: a "spec" column is just text, so keep it in extra.
        layout = replace(layout, spec_field=None).resolve(path, columns)
    return _build_prompts(path, rows, layout, id_prefix)


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {n} is not valid JSON ({e.msg} at column {e.colno}); write one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {n} is a JSON {type(row).__name__}; each line must be an object with a \"prompt\" key")
        rows.append((f"line {n}", row))
    return rows


def _delimited_rows(path: Path, text: str, fmt: str) -> tuple[list[str], list[tuple[str, dict]]]:
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        while not any(h.strip() for h in header):  # blank lines before the header
            header = next(reader)
        columns = [h.strip() for h in header]
        dupes = sorted(c for c, n in Counter(columns).items() if n > 1)
        if dupes:
            raise UserError(f"{path}: duplicate column name(s) {', '.join(map(repr, dupes))} in the header; rename them")
        rows = []
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            if len(cells) != len(columns):
                raise UserError(
                    f"{path}: line {reader.line_num} has {len(cells)} fields but the header has {len(columns)}"
                    + ("; quote fields that contain commas" if fmt == "csv" else "; fields are tab-separated")
                )
            rows.append((f"line {reader.line_num}", dict(zip(columns, cells))))
    except StopIteration:
        raise UserError(f"{path}: no header line; the first line must name the columns (e.g. prompt,category)") from None
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: malformed {fmt.upper()} ({e})") from None
    return columns, rows


def _build_prompts(where: Path, rows: list[tuple[str, dict]], layout: _Layout, id_prefix: str) -> tuple[Prompt, ...]:
    """Apply a resolved layout to located rows, checking each one."""
    if not rows:
        raise UserError(f"{where}: no prompts found; add at least one row")
    prompts, first_seen = [], {}
    for index, (loc, row) in enumerate(rows):
        text = row.get(layout.prompt)
        if not isinstance(text, str):
            got = "nothing" if text is None else type(text).__name__
            raise UserError(f"{where}: {loc}: '{layout.prompt}' must be text, got {got}")
        if not text.strip():
            raise UserError(f"{where}: empty prompt on {loc}; fill it in or delete the row")

        category = row.get(layout.category, "") if layout.category else ""
        if category is None:
            category = ""
        if not isinstance(category, str):
            raise UserError(f"{where}: {loc}: category must be text, got {category!r}")

        if layout.id:
            pid = row.get(layout.id)
            if isinstance(pid, int) and not isinstance(pid, bool):
                pid = str(pid)
            if not isinstance(pid, str) or not pid:
                raise UserError(f"{where}: {loc}: missing id; give every row an id or none at all")
            if not ID_RE.fullmatch(pid):
                raise UserError(
                    f"{where}: {loc}: id {pid!r} is not file-name safe; use letters, digits, '.', '_', '-' (not first '.'), at most 128 characters"
                )
        else:
            pid = f"{id_prefix}-{index:04d}"
        if pid in first_seen:
            raise UserError(f"{where}: duplicate prompt id '{pid}' on {first_seen[pid]} and {loc}; ids must be unique")
        first_seen[pid] = loc

        spec = None
        if layout.spec_fields:
            spec = {k: row[k] for k in layout.spec_fields if k in row} or None
        elif layout.spec_field and row.get(layout.spec_field) is not None:
            spec = row[layout.spec_field]
            if not isinstance(spec, dict):
                raise UserError(f"{where}: {loc}: '{layout.spec_field}' must be an object, got {type(spec).__name__}")

        extra = {c: row.get(c) for c in layout.extra}
        prompts.append(Prompt(id=pid, prompt=text, category=category.strip(), extra=extra, spec=spec))
    return tuple(prompts)
