"""The client side of the wire: the HTTP session, record views, the owner's admin client and
the launcher of a local site. Imports only :mod:`datasite.contract`, never the server."""
