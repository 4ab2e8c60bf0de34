from monet.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
