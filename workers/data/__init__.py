"""Dataset sources and preparation. Importing this package registers every source."""
from workers.data.sources import DatasetError, LoadedDataset, list_sources, load_dataset, register_source
from workers.data import synthetic  # noqa: F401  (registers "synthetic")
from workers.data import dermamnist, ham10000, isic2019  # noqa: F401  (register "dermamnist", "ham10000", "isic2019")
from workers.data.prepare import PreparedData, prepare_data, prepare_shards, preparation_key, run_preparation
from workers.data.shards import DiskSpaceError, ShardedDataset, ShardError, open_sharded

__all__ = ["DatasetError", "DiskSpaceError", "LoadedDataset", "PreparedData", "ShardError", "ShardedDataset",
           "list_sources", "load_dataset", "open_sharded", "prepare_data", "prepare_shards", "preparation_key",
           "register_source", "run_preparation"]
