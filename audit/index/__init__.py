"""LAION-style CLIP indexes: clip-retrieval's folder layout (``clip_index``), the sources they are
built from (``sources``), a clip-retrieval backend client (``remote``, ``remote_index``) and the
``t2i-audit index`` commands (``cli``).  docs/DESIGN.md §5."""

from audit.index.clip_index import (
    RERANK_FACTOR,
    ClipIndex,
    ShardRows,
    build_index,
    embed_source,
    exact_rerank,
    is_index_folder,
    write_index_folder,
)

__all__ = ["RERANK_FACTOR", "ClipIndex", "ShardRows", "build_index", "embed_source", "exact_rerank",
           "is_index_folder", "write_index_folder"]
