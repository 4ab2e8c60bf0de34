"""Pure nn.Modules: generators, critics, denoisers. Nothing here knows about Lightning."""

from monet.nets.cyclegan import PatchDiscriminator, ResnetGenerator
from monet.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from monet.nets.fastgan import FastGANDiscriminator, FastGANGenerator
from monet.nets.unets import AttnUnet, LibUnet, SimpleUnet
from monet.nets.wgan import WGANCritic, WGANGenerator

__all__ = [
    "AttnUnet",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "FastGANDiscriminator",
    "FastGANGenerator",
    "LibUnet",
    "PatchDiscriminator",
    "ResnetGenerator",
    "SimpleUnet",
    "WGANCritic",
    "WGANGenerator",
]
