"""Reconstruction: rigid Wiener backprojection (consensus maps) and flexible L-BFGS."""
