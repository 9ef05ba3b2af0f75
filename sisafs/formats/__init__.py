"""Image formats: container parsing, the restore record, and the protect/restore codecs.

No detection and no FUSE here. `sisafs.formats.codec` is the seam the pipeline uses.
"""
