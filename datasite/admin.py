"""The owner's admin client at the path owners type: ``from datasite import admin``.

The client itself lives in :mod:`datasite.client.admin` (beside the researcher's transport),
so nothing on the client side imports the server.
"""

from datasite.client.admin import DatasiteError, OwnerClient, connect

__all__ = ["DatasiteError", "OwnerClient", "connect"]
