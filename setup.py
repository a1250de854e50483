"""Builds the C kernels (flowaudit/_kernels.c); everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still succeeds, and flowaudit
runs its Python reference loops instead (flowaudit/capture/kernels.py says so at run time).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flowaudit._kernels",
            sources=["flowaudit/_kernels.c"],
            optional=True,
        )
    ]
)
