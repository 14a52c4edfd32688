"""A private Redis Cluster for tests: the starter lives in inventory/local_servers.py, where the
benchmarks use it too."""

from inventory.local_servers import RedisClusterNodes

__all__ = ["RedisClusterNodes"]
