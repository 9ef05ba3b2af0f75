"""Build hook for the C parts of sisafs (the JPEG entropy codec).

pyproject.toml holds all metadata; this file only lists extension modules, which
setuptools cannot declare in pyproject.toml yet.
"""

from setuptools import Extension, setup

EXT_MODULES: list = [
    # Huffman entropy codec of the selective JPEG path (sisafs/formats/jpeg_selective.py).
    Extension("sisafs.formats._jpegcodec", ["sisafs/formats/_jpeg/entropy.c"],
              depends=["sisafs/formats/_jpeg/span.c"],
              extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    # Whole-scan codec of the progressive path (sisafs/formats/jpeg_progressive.py); it
    # includes entropy.c for the shared table builder and bit reader.
    Extension("sisafs.formats._jpegprog", ["sisafs/formats/_jpeg/progressive.c"],
              depends=["sisafs/formats/_jpeg/entropy.c", "sisafs/formats/_jpeg/span.c"],
              extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                  "-Wno-unused-function"]),
]

setup(ext_modules=EXT_MODULES)
