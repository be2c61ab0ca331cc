"""The phrase store: keys, index and files (built out in the phrase-store work)."""
