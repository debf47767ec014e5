"""The HTTP/JSON gateway and the market page (a package, so that its static files ship)."""
