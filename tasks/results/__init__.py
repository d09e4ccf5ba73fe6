"""What a run leaves, read from storage alone: its state, summary, report, exports and assembled books."""
