"""Small helpers every layer may use: files, hashes, errors, threads, progress, environment."""
