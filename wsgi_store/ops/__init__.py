"""Running the service: CLI, daemon, embedded gunicorn, hooks, generators."""
