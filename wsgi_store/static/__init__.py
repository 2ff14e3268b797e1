"""The upload page: HTML, script and style sheet (data files, served by assets.py)."""
