"""Reliability and security: bad input gets a clear error, faults lose nothing, plugins and files
can't do harm (docs/reliability.md names the test behind each promise)."""
