"""Command-line interface: ``flexcore <command> ...``, one module per command."""
