"""The one trainer, with its device, distributed and checkpoint helpers."""
