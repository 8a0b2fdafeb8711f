"""Measures of discovered directions: attribute scores, calibration, dead directions, pairs, group VAE, disentanglement metrics."""
