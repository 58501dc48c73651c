"""CLIP image and text embeddings from open_clip (CLIP score, CMMD, FD_clip).

Three ways to name the model, none of which downloads when offline:

* ``OpenClipExtractor("ViT-B-32", pretrained="laion2b_s34b_b79k")``: an open_clip
  model and pretrained tag, from the open_clip / Hugging Face cache;
* ``OpenClipExtractor("ViT-B-32", pretrained="/path/ckpt.safetensors")``: a local
  checkpoint for a built-in (or registered) model config;
* ``OpenClipExtractor("local-dir:/path/evaluator")``: the hook for the suite's own
  evaluator CLIP: a folder with ``open_clip_config.json`` (``{"model_cfg": {...},
  "preprocess_cfg": {...}}``, the layout open_clip's ``push_to_hub`` writes) and
  ``open_clip_model.safetensors``.  Train a model, save it in this layout, and it
  works with no code change.

Image features are ``encode_image`` of the model's own eval transform (resize of
the shorter side with the configured interpolation, centre crop, normalise; the
key records size, interpolation and resize mode), L2-normalised, as CMMD and
clip-retrieval indexes use them.  ``encode_text`` tokenises to the model's context
length (77 for CLIP); longer prompts are truncated by the tokenizer, and
``encode_text`` says which ones were.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from bench.cache import cached_sha256_file
from bench.errors import UserError
from bench.features.torch_extractor import TorchExtractor

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def _combined_sha256(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(cached_sha256_file(f).encode())
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


class OpenClipExtractor(TorchExtractor):
    """open_clip image embeddings (L2-normalised) plus ``encode_text`` for prompts."""

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        *,
        cache_dir: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ):
        super().__init__(device, dtype)
        import open_clip

        if model.startswith(LOCAL_DIR):
            folder = Path(model[len(LOCAL_DIR) :]).expanduser()
            cfg_file, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
            if not (cfg_file.is_file() and weights.is_file()):
                raise UserError(
                    f"CLIP folder {folder} needs {CONFIG_FILE} and {WEIGHTS_FILE}: save the evaluator CLIP there"
                )
            model_cfg = json.loads(cfg_file.read_text()).get("model_cfg", {})
            self.name = f"clip-{folder.name}"
            self.weights_sha256 = _combined_sha256([cfg_file, weights])
            model_ref, pretrained_arg = LOCAL_DIR + str(folder), None
        elif model.startswith(HF_HUB):
            try:
                ckpt = open_clip.pretrained.download_pretrained_from_hf(model[len(HF_HUB) :], cache_dir=cache_dir)
                model_cfg = open_clip.get_model_config(model) or {}
            except Exception as e:
                raise UserError(
                    f"open_clip model {model} is not available offline ({_first_line(e)}): "
                    f"copy it into a folder and use local-dir:PATH"
                ) from e
            self.name = "clip-" + model[len(HF_HUB) :].replace("/", "-")
            self.weights_sha256 = cached_sha256_file(Path(ckpt))
            model_ref, pretrained_arg = model, None
        else:
            model_cfg = open_clip.get_model_config(model)
            if model_cfg is None:
                close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise UserError(
                    f"unknown open_clip model {model!r}{hint}: see open_clip.list_models(), or use local-dir:PATH"
                )
            if not pretrained:
                raise UserError(
                    f"open_clip model {model} needs weights: pass a pretrained tag "
                    f"({', '.join(open_clip.list_pretrained_tags_by_model(model)[:4]) or 'none known'}) "
                    f"or a checkpoint path"
                )
            if os.path.isfile(pretrained):
                ckpt = Path(pretrained)
                self.name = f"clip-{model}"
            else:
                tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
                if not tag_cfg:
                    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
                    raise UserError(
                        f"{pretrained!r} is neither a file nor a pretrained tag of open_clip {model} (tags: {tags})"
                    )
                try:
                    ckpt = Path(open_clip.pretrained.download_pretrained(tag_cfg, cache_dir=cache_dir))
                except Exception as e:
                    raise UserError(
                        f"weights of open_clip {model} / {pretrained} are not available offline ({_first_line(e)}): "
                        f"download the checkpoint elsewhere and name its path after the model, e.g. --clip {model}@/path/to/checkpoint"
                    ) from e
                self.name = f"clip-{model}-{pretrained}"
            self.weights_sha256 = cached_sha256_file(ckpt)
            model_ref, pretrained_arg = model, pretrained
        self.dim = int(model_cfg["embed_dim"])

        clip, _, preprocess = open_clip.create_model_and_transforms(
            model_ref, pretrained=pretrained_arg, cache_dir=cache_dir
        )
        self.model = self._place(clip)
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_ref)
        self.context_length = int(getattr(self.tokenizer, "context_length", None) or 77)
        pcfg = open_clip.get_model_preprocess_cfg(clip)
        size = pcfg.get("size", 224)
        size = "x".join(str(s) for s in size) if isinstance(size, (tuple, list)) else str(size)
        self.resize = f"openclip-{pcfg.get('interpolation', 'bicubic')}-{pcfg.get('resize_mode', 'shortest')}-{size}"

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.stack([self.transform(Image.fromarray(im)) for im in images])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)

    def token_count(self, text: str) -> int:
        """Tokens of ``text`` including start and end tokens, before truncation."""
        tok = self.tokenizer
        if hasattr(tok, "encode"):  # open_clip's SimpleTokenizer
            return len(tok.encode(text)) + 2
        return len(tok.tokenizer(text)["input_ids"])  # open_clip's HFTokenizer wraps a transformers tokenizer

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised text embeddings float32 [N, d], truncated bool [N]).

        A prompt longer than the context length (77 tokens for CLIP) is cut by the
        tokenizer; ``truncated`` marks those so callers can count and report them.
        """
        texts = list(texts)
        truncated = np.array([self.token_count(t) > self.context_length for t in texts], dtype=bool)
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
            with torch.inference_mode():
                emb = self.model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        emb = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        return emb, truncated
