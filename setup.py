"""Build hook for the C parts of sisafs (the JPEG entropy codec).

pyproject.toml holds all metadata; this file only lists extension modules, which
setuptools cannot declare in pyproject.toml yet.
"""

from setuptools import setup

EXT_MODULES: list = []

setup(ext_modules=EXT_MODULES)
