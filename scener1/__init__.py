"""scener1: grounding language in 3D scenes from RGB-D video, in the manner of Scene-R1.

The package root imports nothing heavy so that ``scener1 --help`` stays instant; import the
subpackages you need (``scener1.data``, ``scener1.lifting`` ...).
"""

__version__ = "0.1.0"
