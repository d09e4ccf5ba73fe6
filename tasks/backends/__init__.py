"""Synthesizer backends behind one small interface (synthesizer), named in a catalog, found through a registry."""
