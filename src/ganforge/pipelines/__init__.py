"""What each user-facing command does, one module per operation: sample, augment, upscale, evaluate.

The CLI (and later the studio) calls only these; they load saved models and run networks, and
never import `ganforge.training`.
"""
