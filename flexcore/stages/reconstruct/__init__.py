"""``flexcore reconstruct`` (flexible L-BFGS reconstruction with a rigid baseline, whole or one
solve at a time), ``reconstruct-combine`` and ``reconstruct-rigid`` (a rigid Wiener map of
particles with poses): :mod:`flexcore.stages.reconstruct.step`."""
