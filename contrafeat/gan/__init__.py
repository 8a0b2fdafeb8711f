"""Generators: the StyleGAN2 networks and the checkpoint formats."""
