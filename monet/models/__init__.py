from monet.models.diffusion import Diffusion
from monet.models.gan import GAN

__all__ = ["GAN", "Diffusion"]
