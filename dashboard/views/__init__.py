"""Dashboard pages, one module per page; ``dashboard.pages.PAGES`` lists them for ``st.navigation``.

Each page module exposes ``render(root: Path)`` drawing the page for the runs
root, and reads the run through ``dashboard.data`` (one data module per page
where that fits); ``common`` holds the widgets the pages share.
"""
