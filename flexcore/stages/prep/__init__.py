"""``flexcore prep``: particles and consensus map at the training box."""
