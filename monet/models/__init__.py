from monet.models.gan import GAN

__all__ = ["GAN"]
