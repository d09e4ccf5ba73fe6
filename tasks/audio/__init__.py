"""Audio: trim, resample, level, encode and join; loudness; listening with an offline Whisper."""
