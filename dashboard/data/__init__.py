"""Reading run directories for the dashboard: pure functions, no Streamlit.

One module per concern (and, where that fits, per page):

* ``reading``       the ``(value, error)`` readers every other module uses: JSON files,
                    contract tables (``bench.contract.read_table``), image paths, file stamps;
* ``discovery``     the runs under a root (``RunInfo``) and why a run is incomplete;
* ``samples``       a run's images: loading, filtering, paging (the Runs page);
* ``metrics``       metrics and sweep tables, pivots, the guidance trade-off curve (the Metrics page);
* ``memorization``  the memorization audit: verdicts, copy rates, headline (the Memorization page);
* ``watermark``     the watermark audit joined to the image grid (the Runs page);
* ``audits``        every audit probe a run recorded in ``summary.json["audits"]`` (the Audits page);
* ``text``          Markdown escaping, captions, facts and number formatting.

Every file name, column and kind comes from ``bench.contract``.  Runs may be
incomplete or damaged, so the loaders never raise on bad files: they return
``(value, error)`` pairs where ``error`` is a one-line message for the UI (or
``None`` when all went well).

These modules import pandas, the standard library and ``bench.contract`` /
``bench.errors`` only (never torch, never ``audit``), so the dashboard starts
fast anywhere.
"""
