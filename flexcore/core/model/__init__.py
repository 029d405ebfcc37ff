"""The 3DFlex model: flow generator, image formation, priors."""
