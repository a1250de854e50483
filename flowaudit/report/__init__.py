"""Views of flowaudit's results: terminal tables, JSON, CSV, Parquet."""
