"""Storage: the only package that runs SQL."""

from durableflow.records import Claimed, NewMessage, Reclaimed
from durableflow.storage.store import Store

__all__ = ["Claimed", "NewMessage", "Reclaimed", "Store"]
