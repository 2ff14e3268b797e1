"""wsgi-store: a content-addressed file store with an HTTP API."""

__version__ = '0.1.0'
