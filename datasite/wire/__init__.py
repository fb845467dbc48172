"""What crosses the wire between the server and its clients: JSON models and the HTTP session."""
