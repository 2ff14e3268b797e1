"""Offline work on a store through a Backend: verify, gc, stats, migrate."""
