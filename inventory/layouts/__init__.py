"""Venue layouts: the seat maps events are created from.

model (the document) -> validation (its rules) -> canonical (seat ids, hash) -> lifecycle
(draft, published, deployed, archived) over a store (store: the interface; postgres, mongo;
backends picks one) -> export (static JSON for a CDN, with ranking's seat ranks) -> events (an
event's inventory and prices from a deployed layout) -> seatmap (export + live availability).
importing reads JSON and CSV files, opera generates a sample venue, cli is `lml-layouts`.
"""
