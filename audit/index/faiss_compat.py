"""One compatibility patch between autofaiss 2.18 and faiss >= 1.12.

autofaiss' inner-product index factory calls ``faiss.OPQMatrix(d, M=..., d2=...)``;
current faiss' SWIG wrapper names that argument ``M_in``, so every OPQ index key
with metric "ip" fails with "unexpected keyword argument 'M'".  autofaiss picks
OPQ keys for large indexes, so both the index builder and the kNN benchmark
need this.  The class itself is patched (isinstance and faiss' downcasts keep
working), only when the installed faiss lacks the ``M`` keyword; positional
calls are unchanged.
"""

from __future__ import annotations


def accept_autofaiss_opq_keyword() -> None:
    import inspect

    import faiss

    init = faiss.OPQMatrix.__init__
    try:
        if "M" in inspect.signature(init).parameters:
            return
    except (TypeError, ValueError):  # a builtin without a signature: leave it alone
        return

    def __init__(self, d=0, M=1, d2=-1, *, M_in=None):  # noqa: N803 (faiss' own argument names)
        init(self, d, M if M_in is None else M_in, d2)

    faiss.OPQMatrix.__init__ = __init__
