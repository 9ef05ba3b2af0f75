"""sisafs: selective image security by alteration, as a FUSE filesystem."""

__version__ = "0.1.0"
