"""``flexcore state-maps``: the flexible half maps deformed to chosen states, with FSC."""
