"""Evaluation of discovered directions: attribute scores, paired data, group VAE, disentanglement metrics."""
