"""``agentz demo``: the whole loop offline against the in-package fake GitHub."""
