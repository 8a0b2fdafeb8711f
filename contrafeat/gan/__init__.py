"""Generators: the StyleGAN2 networks, checkpoint formats, and the embedded shapes3d generator."""
