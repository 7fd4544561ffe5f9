"""The work behind the routes, apart from HTTP."""
