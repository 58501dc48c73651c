"""Build the real CLIP BPE tokenizer offline from the vocabulary that open_clip ships.

open_clip carries OpenAI's ``bpe_simple_vocab_16e6.txt.gz``.  Hugging Face's
``CLIPTokenizer`` wants ``vocab.json`` + ``merges.txt``; both are derived from
that file exactly as OpenAI's ``SimpleTokenizer`` derives its encoder (byte
symbols, the same symbols with ``</w>``, the first 48,894 merges, then the two
special tokens), which gives the standard 49,408-token vocabulary.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

MERGES_USED = 49152 - 256 - 2  # OpenAI's SimpleTokenizer keeps this many merges
VOCAB_SIZE = 49408


def _bytes_to_unicode() -> dict[int, str]:
    # Same table as OpenAI CLIP / GPT-2: printable stand-ins for all 256 bytes.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _open_clip_bpe_path() -> Path:
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_tokenizer_files(out_dir: str | Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs CLIPTokenizer loads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_open_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGES_USED + 1]]
    byte_symbols = list(_bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "errors": "replace"}))
    return out


def build_clip_tokenizer(cache_dir: str | Path):
    """A ``transformers.CLIPTokenizer`` with the real CLIP vocabulary, built offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer_files(cache_dir)))
