from monet.models.cyclegan import CycleGAN, LinearDecay
from monet.models.diffusion import Diffusion
from monet.models.gan import GAN

__all__ = ["GAN", "CycleGAN", "Diffusion", "LinearDecay"]
