"""One module per ``mar`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
