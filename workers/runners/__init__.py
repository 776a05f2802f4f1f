"""Agent backends behind one runner contract."""
