"""Data: prompt sets, the true/false statement set, the text corpus and token classes (what a token
is for the sink census: first, special, punctuation, content)."""
