"""Fused attention backend (issue 17): the suite's per-head statistics computed from Q, K, V in
tiles, without materialising [batch, head, T, T] attention patterns."""
