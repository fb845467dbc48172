"""Asset storage: Parquet files under the site's storage root."""
