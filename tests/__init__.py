"""wsgi-store's test suite: a regular package, so site-packages can't shadow it.

sniffpy (a dependency of httplint) installs a top-level ``tests`` package; a
regular package in site-packages wins over a namespace directory earlier on
sys.path, so without this file ``from tests.servers import ...`` broke (trap 16).
"""
