"""The HTTP face: resources, uploads, downloads, auth, problem+json, logs, metrics."""
