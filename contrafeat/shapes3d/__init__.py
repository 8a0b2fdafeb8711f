"""The built-in shapes3d worlds: renderer, factor grid and render cache, the linear and learned generators, the factor CNN, the answer keys."""
