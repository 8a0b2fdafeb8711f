"""Direction discovery: informative subspace, navigator, contrastive losses, trainer, methods."""
