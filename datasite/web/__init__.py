"""The review pages served by the datasite (see ``datasite.web.pages``)."""
