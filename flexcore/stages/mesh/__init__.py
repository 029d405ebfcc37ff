"""``flexcore mesh``: the tetrahedral mesh of a consensus map."""
