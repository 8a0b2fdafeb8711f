"""contrafeat: discover interpretable directions in StyleGAN2 latent spaces by contrasting deep features."""
from contrafeat.gan.zoo import load_generator

__all__ = ["load_generator"]
__version__ = "0.1.0"
