"""``flexcore evaluate``: a trained model scored against a simulation's ground truth."""
