"""Data contracts that several packages read (DESIGN.md §4): the bottom of the import graph, stdlib only."""
