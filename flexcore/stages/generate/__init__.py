"""``flexcore generate``: volume series from a trained model."""
