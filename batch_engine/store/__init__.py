"""What the engine keeps on disk: the ledger (every state change) and the output folder's files."""
