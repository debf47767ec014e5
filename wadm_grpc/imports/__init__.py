"""The importer's parts: rows (skip, validate), destinations (service, direct), progress."""
