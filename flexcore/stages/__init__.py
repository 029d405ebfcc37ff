"""The stages tier: one package per command (``simulate``, ``prep``, ``mesh``, ``train``,
``generate``, ``reconstruct``, ``select``, ``state_maps``, ``localres``, ``evaluate``,
``evaluate_reconstruction``, ``sweep_summary``, ``provenance``), each with ``step.py``
holding ``run_<command>``. A stage imports only the core, never another stage: stages talk
through the files they write.
"""
