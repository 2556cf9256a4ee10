"""Command-line tools (``petastorm-copy-dataset``)."""
