"""Dashboard pages, one module per page; ``dashboard.app`` lists them in ``st.navigation``.

Each module exposes ``render(root: Path)`` drawing the page for the runs root.
"""
