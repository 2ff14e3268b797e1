"""WSGI entry point for ``gunicorn wsgi_store.wsgi:app`` (settings from env)."""

from __future__ import annotations

from wsgi_store.app import create_app

app = create_app()
