"""Pure nn.Modules: generators, critics, denoisers. Nothing here knows about Lightning."""

from monet.nets.wgan import WGANCritic, WGANGenerator

__all__ = ["WGANCritic", "WGANGenerator"]
