"""The workflow's ``provenance.yaml``: what produced a results folder (rule ``provenance``)."""
