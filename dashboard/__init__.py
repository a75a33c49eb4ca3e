"""The Streamlit dashboard: ``app.py`` builds the navigation over ``dashboard/pages``.

Layering: ``app.py`` -> ``dashboard`` -> ``profilers``; nothing below imports this
package, and no module here imports tensorflow or pynvml (tests/test_layering.py).
"""
