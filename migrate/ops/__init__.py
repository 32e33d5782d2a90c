"""The implementations of actions, one module per kind of step, each function marked with
`@operation(name)` (see `migrate.engine.registry`). Only the composition root
(`migrate.commands`) imports them all, to build the registry the engine runs.
"""
