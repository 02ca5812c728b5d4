"""Built-in target datasets that `pttrain data` exports."""
