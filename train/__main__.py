"""`python -m train` is `pttrain` (torchrun launches it this way)."""

from .cli import main

main()
