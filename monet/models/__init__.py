from monet.models.cut import CUT
from monet.models.cyclegan import CycleGAN, LinearDecay
from monet.models.diffusion import Diffusion
from monet.models.gan import GAN

__all__ = ["CUT", "GAN", "CycleGAN", "Diffusion", "LinearDecay"]
