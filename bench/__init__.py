"""wsgi-store benchmark harness: the store against nginx and the disk, same run.

Run ``python -m bench`` (full, under 5 minutes) or ``python -m bench --quick``.
See bench/README.md for how to read the table.
"""
