"""Generation stage of ptgen: class-conditional generators -> WebDataset shards."""

__version__ = "0.1.0"
