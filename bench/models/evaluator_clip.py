"""The built-in evaluator CLIP: a small open_clip model trained on the shapes
world's ``evaluator`` split (``scripts/train_evaluator_clip.py``).

It is a separate model from the generator's text encoder (docs/DESIGN.md §2):
a ViT image tower and a small text transformer with the standard 49,408-token
CLIP vocabulary and open_clip's tokenizer.  The directory holds

* ``shapes-clip.json``           the open_clip model config (registered under
  the name ``shapes-clip`` by :func:`register_config`),
* ``open_clip_config.json``      the same config in open_clip's hub layout
  (``model_cfg`` + ``preprocess_cfg``), so ``local-dir:<dir>`` works too,
* ``open_clip_model.safetensors`` the weights (fp16 on disk, loaded as fp32).
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserError

MODEL_NAME = "shapes-clip"
DEFAULT_DIR = Path(__file__).resolve().parent / "builtin" / "shapes-clip"
CONFIG_FILE = f"{MODEL_NAME}.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def register_config(model_dir: str | Path = DEFAULT_DIR) -> str:
    """Register the custom model config with open_clip; return the model name."""
    import open_clip

    cfg = Path(model_dir) / CONFIG_FILE
    if not cfg.is_file():
        raise UserError(f"evaluator CLIP config {cfg} is missing; run scripts/train_evaluator_clip.py")
    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(cfg)
    return MODEL_NAME


def load_evaluator_clip(model_dir: str | Path = DEFAULT_DIR, device: str = "cpu"):
    """``(model, preprocess, tokenizer)`` of the built-in evaluator CLIP, in eval mode.

    ``preprocess`` maps a PIL image to a normalised tensor; ``tokenizer`` maps a
    list of strings to token ids (open_clip's CLIP BPE tokenizer)."""
    import open_clip
    import torch
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"evaluator CLIP weights {weights} are missing; run scripts/train_evaluator_clip.py")
    import logging

    name = register_config(model_dir)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights": we load them just below
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
    finally:
        root.setLevel(level)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.to(device=device, dtype=torch.float32).eval()
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer
