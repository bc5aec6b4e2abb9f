"""The run directory: what a run writes (write) and what the report reads back (read)."""
