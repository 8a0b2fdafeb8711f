"""contrafeat: discover interpretable directions in StyleGAN2 latent spaces by contrasting deep features."""
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.gan.zoo import load_generator

__all__ = ["Directions", "load_directions", "load_generator"]
__version__ = "0.1.0"
