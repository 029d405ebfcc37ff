"""Small helpers shared by the pipeline steps (atomic writes, logging, provenance)."""
