"""``flexcore evaluate-reconstruction``: the reconstructions scored against a simulation's
ground truth in its moving domain."""
