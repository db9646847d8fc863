"""The only place that knows paths, URLs and hashes.

- `registry`: known weights (names, files, URLs, sha256), search folders, downloads
- `readers`: foreign checkpoints read without running their code
- `cache`: the user cache and its one cache-path rule
- `mappers`: mapper files (per-prompt and universal) and their lookup
- `stylespace_files`: a generator's S-space files (shipped, cached, prepared; computed when missing)
- `prepared`: the records of `styleclip prepare`
"""
