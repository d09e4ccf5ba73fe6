"""Planning: chunk ids, voices per language and row, the plan's Parquet file and its one copy in storage."""
