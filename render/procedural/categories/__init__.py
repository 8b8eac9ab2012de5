"""One module per procedural category; each has `build(gen) -> clip names`."""
