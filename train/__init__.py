"""The training stage of ptgen (CLI `pttrain`): consumes shards and target data; never imports `generate`."""
