"""Trade sources that feed the ingest service: the demo feed and the Binance CSV importer."""
