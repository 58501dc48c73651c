"""Start clip-retrieval's own backend (``clip-retrieval back``) with a local open_clip model.

Run it with the clip-retrieval environment's python (``make clip-retrieval-env``):

    .venv-clip-retrieval/bin/python scripts/clip_retrieval_back.py \
        --indices-paths indices.json --port 1234 --columns key,caption,url

``indices.json`` maps index names to index folders (clip-retrieval's format, e.g.
``{"shapes": "indexes/shapes-laion-20k"}``).

Why a launcher: ``clip-retrieval back`` loads a CLIP at start (for text and image
queries) through ``all_clip``, which downloads named models from a hub.  Its own
``--clip_model open_clip:<name>/<checkpoint file>`` option loads a local checkpoint
file with no download, but only for a model *name* open_clip knows; the built-in
evaluator CLIP is a custom open_clip config (``bench/models/builtin/shapes-clip``).
So this script registers that config with open_clip (``open_clip.add_model_config``)
and then calls clip-retrieval's ``clip_back`` unchanged, with the hub-only extras
(multilingual CLIP, aesthetic embeddings, safety and violence models) off.
clip_back also hard-codes ``host="0.0.0.0"``; an audit backend should listen only
where we say (loopback by default), so Flask's ``run`` gets our ``--host``.

This file must not import ``bench`` or ``audit``: it runs in clip-retrieval's
environment, where the core package (newer transformers/diffusers) is not installed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP_DIR = REPO / "bench" / "models" / "builtin" / "shapes-clip"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--indices-paths", required=True, help="JSON file: {index name: index folder}")
    p.add_argument("--port", type=int, default=1234)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--clip-config", default=str(CLIP_DIR / "shapes-clip.json"),
                   help="open_clip model config; its file name (without .json) is the model name")
    p.add_argument("--clip-weights", default=str(CLIP_DIR / "open_clip_model.safetensors"),
                   help="the model's weights (.safetensors)")
    p.add_argument("--columns", default="key,caption,url,image_path,punsafe,pwatermark",
                   help="comma-separated metadata columns to return (missing ones are skipped)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    config, weights = Path(args.clip_config).resolve(), Path(args.clip_weights).resolve()
    for path in (config, weights, Path(args.indices_paths)):
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist")
    logging.basicConfig(level=logging.INFO)

    import flask
    import open_clip
    from clip_retrieval.clip_back import clip_back

    open_clip.add_model_config(config)
    flask_run = flask.Flask.run

    def run_on_our_host(self, host=None, port=None, **kwargs):
        return flask_run(self, host=args.host, port=port, **kwargs)

    flask.Flask.run = run_on_our_host
    clip_back(
        indices_paths=args.indices_paths,
        port=args.port,
        # all_clip's open_clip loader splits "<name>/<checkpoint>" at the first "/": an absolute
        # path therefore follows the name as "<name>//abs/path.safetensors".
        clip_model=f"open_clip:{config.stem}/{weights}",
        use_jit=False,
        columns_to_return=[c for c in args.columns.split(",") if c],
        enable_mclip_option=False,
        provide_aesthetic_embeddings=False,
        provide_safety_model=False,
        provide_violence_detector=False,
    )


if __name__ == "__main__":
    main()
