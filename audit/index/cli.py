"""``t2i-audit index build|open|query``: CLIP indexes in clip-retrieval's layout (see ``audit.index``)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  # the built-in LAION-style corpus (a 20k-row subset keeping every iconic duplicate group)
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  # your own data: an image folder (captions from same-name .txt files), a table, webdataset shards
  t2i-audit index build photos/ --out indexes/photos
  t2i-audit index build images.csv --caption-column alt_text --out indexes/mine
  t2i-audit index build 'shards/{00000..00009}.tar' --out indexes/wds --clip ViT-B-32@laion2b_s34b_b79k
  # a large set: autofaiss picks a compressed index under a memory budget
  t2i-audit index build shapes-laion --index-type autofaiss --max-index-memory 256M --out indexes/shapes-laion
  t2i-audit index open indexes/shapes-laion-20k
  t2i-audit index query indexes/shapes-laion-20k --text "a red circle" -k 5
"""

BUILD_EPILOG = """examples:
  t2i-audit index build shapes-laion:20000 --out indexes/shapes-laion-20k
  t2i-audit index build photos/ --out indexes/photos --batch-size 64
  t2i-audit index build images.parquet --image-column file --caption-column text --out indexes/mine
  t2i-audit index build shards/ --out indexes/wds --index-type autofaiss --max-index-memory 2G
  t2i-audit index build shapes-laion:2000 --out indexes/small --overwrite
"""

OPEN_EPILOG = """examples:
  t2i-audit index open indexes/shapes-laion-20k
  t2i-audit index open /data/laion-subset-index     # a folder clip-retrieval built
"""

QUERY_EPILOG = """examples:
  t2i-audit index query indexes/shapes-laion-20k --text "a red circle" -k 5
  t2i-audit index query indexes/shapes-laion-20k --image runs/demo/images/p0000__s0__g7.5.png
  t2i-audit index query indexes/shapes-laion-20k --text "stock photo of a star" --modality text
"""


def register(subparsers) -> None:
    index = subparsers.add_parser("index", help="build, inspect and query CLIP indexes (clip-retrieval layout)",
                                  epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = index.add_subparsers(dest="index_command", required=True)

    build = sub.add_parser("build", help="embed a source with CLIP and write an index folder",
                           epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("source", help="shapes-laion[:N], an image folder, a .parquet/.csv/.tsv table, or webdataset .tar shard(s)")
    build.add_argument("--out", required=True, help="index folder to write")
    build.add_argument("--clip", default="builtin", help="'builtin' (the shapes-world evaluator CLIP) or MODEL@TAG (default builtin)")
    build.add_argument("--index-type", default="auto", choices=["auto", "flat", "autofaiss"],
                       help="flat = exact search; autofaiss = compressed under --max-index-memory; auto = flat below 100k rows")
    build.add_argument("--max-index-memory", default="1G", help="autofaiss memory budget for the index (default 1G)")
    build.add_argument("--batch-size", type=int, default=256, help="images per CLIP batch (default 256)")
    build.add_argument("--image-column", help="table column with image paths (default: image_path, path, file, ...)")
    build.add_argument("--caption-column", help="table column with captions (default: caption, text, prompt, ...)")
    build.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    build.set_defaults(func=run_build)

    opened = sub.add_parser("open", help="check an index folder and print its size, dimension, model and columns",
                            epilog=OPEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    opened.add_argument("folder")
    opened.set_defaults(func=run_open)

    query = sub.add_parser("query", help="nearest neighbours of a text or an image, for a quick look",
                           epilog=QUERY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    query.add_argument("folder")
    what = query.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="a caption to embed with the index's CLIP")
    what.add_argument("--image", help="an image file to embed with the index's CLIP")
    query.add_argument("-k", type=int, default=5, help="neighbours to show (default 5)")
    query.add_argument("--modality", default="image", choices=["image", "text"],
                       help="search image embeddings (default) or caption embeddings")
    query.add_argument("--clip", help="CLIP to embed the query (default: the one recorded in the index, else builtin)")
    query.add_argument("--device", default="auto")
    query.set_defaults(func=run_query)


def _extractor(clip: str, device: str):
    from bench.features import get_extractor
    from bench.models.loader import pick_device
    from bench.score import clip_extractor_spec

    return get_extractor(clip_extractor_spec(clip), device=pick_device(device))


def run_build(args) -> int:
    import time

    from audit.index import build_index
    from bench.models.loader import pick_device

    started = time.perf_counter()
    # The CLIP is passed by name: build_index checks the source before loading it and
    # records the name, so `index query` can embed with the same CLIP.
    index = build_index(args.source, args.out, args.clip, index_type=args.index_type,
                        max_index_memory=args.max_index_memory, batch_size=args.batch_size,
                        progress=not args.no_progress, overwrite=args.overwrite, image_column=args.image_column,
                        caption_column=args.caption_column, device=pick_device(args.device))
    skipped = f", {index.info['n_skipped']} unreadable skipped" if index.info.get("n_skipped") else ""
    print(f"index: {index.folder}  ({index.n} rows, dim {index.dim}, {index.index_type}{skipped}, "
          f"{time.perf_counter() - started:.0f} s)")
    return 0


def run_open(args) -> int:
    from audit.index import ClipIndex

    d = ClipIndex.open(args.folder).describe()
    print(f"index:      {d['folder']}")
    print(f"rows:       {d['rows']}")
    print(f"dimension:  {d['dim']}")
    print(f"model:      {d['model']}")
    print(f"index type: {d['index_type']}")
    print(f"searchable: {', '.join(d['modalities'])}")
    print(f"source:     {d['source']}")
    print(f"metadata:   {', '.join(d['metadata_columns']) or 'none'}")
    return 0


def run_query(args) -> int:
    import pandas as pd

    from audit.index import ClipIndex
    from bench.errors import UserError

    index = ClipIndex.open(args.folder)
    clip = args.clip or index.info.get("clip") or "builtin"
    extractor = _extractor(clip, args.device)
    # Refuse before embedding anything, with the index's own message.
    index.check_query(extractor.key, extractor.dim)
    if args.text is not None:
        query = extractor.encode_text([args.text])[0]
    else:
        from bench.features.images import ImageProblem, load_image

        try:
            query = extractor([load_image(args.image)[0]])
        except ImageProblem as e:
            raise UserError(f"cannot read query image {args.image} ({e}); pass a PNG/JPEG file") from None
    scores, ids = index.search(query, args.k, modality=args.modality, query_key=extractor.key)
    meta = index.metadata()
    shown = [c for c in ("key", "caption", "image_path", "url") if c in meta.columns][:3]
    rows = []
    for rank, (score, row) in enumerate(zip(scores[0], ids[0])):
        if row < 0:
            break
        rows.append({"rank": rank, "cosine": round(float(score), 4), "row": int(row),
                     **{c: meta.iloc[int(row)][c] for c in shown}})
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0
