"""u2ref: a PyTorch reference implementation of WeNet's U2/U2++ model (see model.py for the API)."""
