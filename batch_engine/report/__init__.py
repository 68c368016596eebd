"""What a run and a ledger look like to people (console tables, summary, progress) and scripts."""
