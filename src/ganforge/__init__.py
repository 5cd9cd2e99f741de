"""ganforge: train GANs on a folder of images, then turn them into pictures.

`ganforge.load(...)` is the Python API (`ganforge.api`); it is imported on first use, so that
`import ganforge` stays cheap for the command line and for worker processes.
"""

__version__ = "0.1.0"
PUBLIC_API = ("load", "list_models", "stylize")  # names of ganforge.api offered as ganforge.NAME


def __getattr__(name: str):
    if name in PUBLIC_API:
        from ganforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
